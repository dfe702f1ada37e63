//! Organizations: the accounts of an organizational unit (ListAccountsForParent, every page;
//! Organizations API reference: `ParentId` is the OU's id, `MaxResults` 1 to 20, the answer's
//! `State`, which replaces `Status`), and the OU an account is in now (ListParents: "a child can
//! have only a single parent"). Organizations answers only in the
//! management account or a delegated administrator account, from its endpoint in the
//! partition's home region (us-east-1 for `aws`).

use aws_sdk_organizations::types::{AccountState, AccountStatus};
use aws_sdk_organizations::Client;

use crate::domain::ids::{AccountId, Region};
use crate::error::{Error, Result};

/// The region of the partition's Organizations endpoint.
pub fn endpoint_region(home: &Region) -> &'static str {
    match home.partition() {
        "aws-cn" => "cn-northwest-1",
        "aws-us-gov" => "us-gov-west-1",
        _ => "us-east-1",
    }
}

/// The active accounts directly in the OU `ou_id` (a suspended or closing account is no target).
pub async fn accounts_in(client: &Client, ou_id: &str) -> Result<Vec<AccountId>> {
    let mut out = Vec::new();
    let mut pages = client
        .list_accounts_for_parent()
        .parent_id(ou_id)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("ListAccountsForParent", "", e))?;
        for account in page.accounts() {
            // `State` replaces `Status` (retired by Organizations in September 2026); an answer
            // that still carries only `Status` is read through it.
            let active = match account.state() {
                Some(state) => state == &AccountState::Active,
                None => account.status() == Some(&AccountStatus::Active),
            };
            if !active {
                continue;
            }
            if let Some(id) = account.id().and_then(|id| id.parse::<AccountId>().ok()) {
                out.push(id);
            }
        }
    }
    Ok(out)
}

/// The id of the OU or root `account` is directly in (ListParents, every page: a List call
/// may answer an empty page while more follow), or none when the organization has no such
/// account (`ChildNotFoundException`: it left, or was never in it).
pub async fn parent_of(client: &Client, account: &AccountId) -> Result<Option<String>> {
    let mut pages = client
        .list_parents()
        .child_id(account.as_str())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(p) => p,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_child_not_found_exception()) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(Error::aws("ListParents", "", e)),
        };
        if let Some(id) = page.parents().iter().find_map(|p| p.id()) {
            return Ok(Some(id.to_string()));
        }
    }
    Ok(None)
}
