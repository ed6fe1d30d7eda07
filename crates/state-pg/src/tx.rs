//! A commit's transaction: the guard shared with the postgres sink (`dovetail_pg::tx`):
//! BEGIN and COMMIT go out with the commit's statements; dropped while open, it queues a
//! ROLLBACK.

/// A pooled connection inside a commit's transaction.
pub(crate) type TxConn = dovetail_pg::TxConn<crate::Conn>;
