//! What the test modules share: the mocked API server ([`mock_api`]), the custom resources as
//! builders ([`fixtures`]) and kstatus's verdict on a custom resource ([`kstatus`]).

pub mod fixtures;
pub mod kstatus;
pub mod mock_api;
