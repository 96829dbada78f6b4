//! The usage ledger's format and the usage periods, shared by the scanner (which writes its
//! counts and enforces the quota, `pd_scanner::serve::usage`) and the operator (which sums the
//! ledgers and writes the quota grants): one definition, so the two sides cannot drift.

pub mod ledger;
pub mod period;
