pub mod auditor;
pub mod bench;
pub mod init;
pub mod log;
pub mod model;
pub mod principal;
pub mod verify;
