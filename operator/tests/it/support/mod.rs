//! What the test modules share: the mocked API server ([`mock_api`]) and kstatus's verdict on a
//! custom resource ([`kstatus`]).

pub mod kstatus;
pub mod mock_api;
