//! Recall: take a bad image and everything made from it out of circulation. A run request
//! `{"recall": {"image_id", "reason"}}` to the age-out function finds the tree of images
//! descended from it ([`tree`]).

pub mod tree;

#[cfg(test)]
mod tests;
