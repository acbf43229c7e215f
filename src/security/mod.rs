//! Accounts, password hashing, sessions and tickets, stored through sqlx (SQLite by default).
//! Shared by every emulated server.
