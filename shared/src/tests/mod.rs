//! Test support of the library's unit tests (compiled only for tests).

mod docs;
pub mod fakes;
mod layers;
mod model;
mod names;
mod properties;
