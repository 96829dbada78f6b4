//! What the test modules share: the mocked API server ([`mock_api`]), the custom resources as
//! builders ([`fixtures`]), kstatus's verdict on a custom resource ([`kstatus`]) and a local
//! scanner run like a scanner pod ([`scanner`]).

pub mod fixtures;
pub mod kstatus;
pub mod mock_api;
pub mod scanner;
