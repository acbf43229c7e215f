//! Accounts, password hashing, sessions and tickets, stored through sqlx (SQLite by default).
//! Shared by every emulated server.
//!
//! The schema is applied from an ordered list of SQL migrations embedded in the binary and
//! recorded in a `schema_version` table (sqlx's `migrate!` macro would need the `macros`
//! feature, which the crate does not enable). Passwords are argon2id PHC strings; hashing
//! and verifying run on the blocking pool so a login never stalls the async workers.

pub mod expiring;
pub mod jwt;

use std::path::Path;
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// The seeded test account (also in the README).
pub const TEST_EMAIL: &str = "test@gamewire.local";
pub const TEST_PASSWORD: &str = "gamewire";
pub const TEST_NAME: &str = "TestCommander";
/// The test account's persona, so a fresh install can log in straight away.
pub const TEST_PERSONA: &str = "Commander";

/// Ordered migrations; a new schema change is appended, never edited in place.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        display_name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1,
        banned INTEGER NOT NULL DEFAULT 0,
        created TEXT NOT NULL
    );
    CREATE TABLE personas (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL REFERENCES users(id),
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        created TEXT NOT NULL
    );
    CREATE INDEX personas_user ON personas(user_id);
    CREATE TABLE tickets (
        ticket TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        persona_id INTEGER NOT NULL REFERENCES personas(id),
        challenge TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        used INTEGER NOT NULL DEFAULT 0
    );
    -- Ids in the ranges retail servers hand out (users 1000001.., personas 2000001..), so
    -- captures of the emulator look like retail ones.
    INSERT INTO sqlite_sequence (name, seq) VALUES ('users', 1000000), ('personas', 2000000);",
)];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("creating the database directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("migration {version}: {source}")]
    Migration { version: i64, source: sqlx::Error },
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("an account with the email {0:?} already exists")]
    DuplicateEmail(String),
    #[error("the persona name {0:?} is taken")]
    DuplicatePersona(String),
    #[error("invalid persona name {0:?}: {1}")]
    InvalidPersona(String, &'static str),
    #[error("no account with the email {0:?}")]
    NoSuchUser(String),
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, &'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("no such account")]
    Unknown,
    #[error("wrong password")]
    WrongPassword,
    #[error("account disabled")]
    Disabled,
    #[error("account banned")]
    Banned,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("unknown ticket")]
    Unknown,
    #[error("ticket already used")]
    Used,
    #[error("ticket expired")]
    Expired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for TicketError {
    fn from(e: sqlx::Error) -> Self {
        TicketError::Store(StoreError::Db(e))
    }
}

impl From<sqlx::Error> for LoginError {
    fn from(e: sqlx::Error) -> Self {
        LoginError::Store(StoreError::Db(e))
    }
}

/// How expensive password hashes are to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashCost {
    /// argon2's recommended parameters (19 MiB, 2 passes).
    Default,
    /// 8 KiB, 1 pass: only for load tests and test suites, never for real accounts.
    Cheap,
}

impl HashCost {
    fn hasher(self) -> Argon2<'static> {
        let params = match self {
            HashCost::Default => Params::DEFAULT,
            HashCost::Cheap => Params::new(8, 1, 1, None).unwrap_or(Params::DEFAULT),
        };
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub active: bool,
    pub banned: bool,
    pub created: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persona {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created: String,
}

/// What a consumed ticket stood for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketGrant {
    pub user_id: i64,
    pub persona_id: i64,
    pub persona_name: String,
    /// The FESL challenge issued with the ticket: the GP login's password.
    pub challenge: String,
}

/// The accounts database. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    cost: HashCost,
}

fn now_text() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Persona names: 3 to 16 characters, letters, digits, `_` and `-`, starting with a letter.
pub fn check_persona_name(name: &str) -> Result<(), &'static str> {
    if !(3..=16).contains(&name.chars().count()) {
        return Err("must be 3 to 16 characters long");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("must start with a letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err("may contain only letters, digits, '_' and '-'");
    }
    Ok(())
}

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        active: row.try_get::<i64, _>("active")? != 0,
        banned: row.try_get::<i64, _>("banned")? != 0,
        created: row.try_get("created")?,
    })
}

impl Store {
    /// Opens (creating the file and its directory if needed) and migrates the database.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL loses no committed data on a process crash, only possibly
            // the last commits on power loss; FULL would fsync every login ticket.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        Store::init(pool).await
    }

    /// A private in-memory database (one connection, so every query sees the same data).
    pub async fn open_memory() -> Result<Store, StoreError> {
        let opts = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await?;
        Store::init(pool).await
    }

    async fn init(pool: SqlitePool) -> Result<Store, StoreError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied TEXT NOT NULL)",
        )
        .execute(&pool)
        .await?;
        for &(version, sql) in MIGRATIONS {
            let mut tx = pool.begin().await?;
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_version WHERE version = ?")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(sql)
                .execute(&mut *tx)
                .await
                .map_err(|source| StoreError::Migration { version, source })?;
            sqlx::query("INSERT INTO schema_version (version, applied) VALUES (?, ?)")
                .bind(version)
                .bind(now_text())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(Store {
            pool,
            cost: HashCost::Default,
        })
    }

    /// The cost of hashes made from now on (existing hashes keep theirs).
    pub fn with_hash_cost(mut self, cost: HashCost) -> Store {
        self.cost = cost;
        self
    }

    pub fn hash_cost(&self) -> HashCost {
        self.cost
    }

    async fn hash(&self, password: &str) -> Result<String, StoreError> {
        let cost = self.cost;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            cost.hasher()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| StoreError::Hash(e.to_string()))
        })
        .await
        .map_err(|e| StoreError::Hash(e.to_string()))?
    }

    /// Creates an account; the email must be new.
    pub async fn add_user(
        &self,
        email: &str,
        password: &str,
        display_name: &str,
    ) -> Result<User, StoreError> {
        let email = email.trim();
        if email.is_empty() || !email.contains('@') {
            return Err(StoreError::Invalid("email", "must look like name@domain"));
        }
        if password.is_empty() {
            return Err(StoreError::Invalid("password", "must not be empty"));
        }
        if display_name.trim().is_empty() {
            return Err(StoreError::Invalid("display name", "must not be empty"));
        }
        let hash = self.hash(password).await?;
        let result = sqlx::query(
            "INSERT INTO users (email, display_name, password_hash, created) VALUES (?, ?, ?, ?)
             RETURNING id, email, display_name, active, banned, created",
        )
        .bind(email)
        .bind(display_name)
        .bind(hash)
        .bind(now_text())
        .fetch_one(&self.pool)
        .await;
        match result {
            Ok(row) => Ok(user_from_row(&row)?),
            Err(e) if is_unique_violation(&e) => Err(StoreError::DuplicateEmail(email.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, display_name, active, banned, created FROM users WHERE email = ?",
        )
        .bind(email.trim())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    /// Checks a login. The password is checked before the account's flags so that a
    /// disabled or banned account tells its state only to someone who knows the password.
    pub async fn verify_login(&self, email: &str, password: &str) -> Result<User, LoginError> {
        let row = sqlx::query(
            "SELECT id, email, display_name, active, banned, created, password_hash
             FROM users WHERE email = ?",
        )
        .bind(email.trim())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Err(LoginError::Unknown);
        };
        let user = user_from_row(&row)?;
        let hash: String = row.try_get("password_hash")?;
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            // The hash names its own parameters, so any cost verifies.
            HashCost::Default
                .hasher()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .map_err(|e| StoreError::Hash(e.to_string()))?;
        if !ok {
            return Err(LoginError::WrongPassword);
        }
        if user.banned {
            return Err(LoginError::Banned);
        }
        if !user.active {
            return Err(LoginError::Disabled);
        }
        Ok(user)
    }

    pub async fn set_password(&self, email: &str, password: &str) -> Result<(), StoreError> {
        if password.is_empty() {
            return Err(StoreError::Invalid("password", "must not be empty"));
        }
        let hash = self.hash(password).await?;
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE email = ?")
            .bind(hash)
            .bind(email.trim())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSuchUser(email.to_owned()));
        }
        Ok(())
    }

    async fn set_flag(&self, sql: &'static str, email: &str, on: bool) -> Result<(), StoreError> {
        let done = sqlx::query(sql)
            .bind(i64::from(on))
            .bind(email.trim())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSuchUser(email.to_owned()));
        }
        Ok(())
    }

    /// Marks an account inactive (login answers "disabled").
    pub async fn disable(&self, email: &str) -> Result<(), StoreError> {
        self.set_flag(
            "UPDATE users SET active = 1 - ? WHERE email = ?",
            email,
            true,
        )
        .await
    }

    pub async fn enable(&self, email: &str) -> Result<(), StoreError> {
        self.set_flag(
            "UPDATE users SET active = 1 - ? WHERE email = ?",
            email,
            false,
        )
        .await
    }

    pub async fn set_banned(&self, email: &str, banned: bool) -> Result<(), StoreError> {
        self.set_flag("UPDATE users SET banned = ? WHERE email = ?", email, banned)
            .await
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, email, display_name, active, banned, created FROM users ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(user_from_row)
            .collect::<Result<_, sqlx::Error>>()?)
    }

    pub async fn personas_of(&self, user_id: i64) -> Result<Vec<Persona>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, name, created FROM personas WHERE user_id = ? ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Persona {
                    id: r.try_get("id")?,
                    user_id: r.try_get("user_id")?,
                    name: r.try_get("name")?,
                    created: r.try_get("created")?,
                })
            })
            .collect()
    }

    /// Adds a persona; names are unique across all users (case-insensitively).
    pub async fn add_persona(&self, user_id: i64, name: &str) -> Result<Persona, StoreError> {
        check_persona_name(name).map_err(|why| StoreError::InvalidPersona(name.to_owned(), why))?;
        let created = now_text();
        let result = sqlx::query(
            "INSERT INTO personas (user_id, name, created) VALUES (?, ?, ?) RETURNING id",
        )
        .bind(user_id)
        .bind(name)
        .bind(&created)
        .fetch_one(&self.pool)
        .await;
        match result {
            Ok(row) => Ok(Persona {
                id: row.try_get("id")?,
                user_id,
                name: name.to_owned(),
                created,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::DuplicatePersona(name.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// Issues a single-use ticket `base64(userId|profileId|secret)` for a persona, valid
    /// for `ttl`, remembering the FESL challenge that goes with it.
    pub async fn issue_ticket(
        &self,
        user_id: i64,
        persona_id: i64,
        challenge: &str,
        ttl: Duration,
    ) -> Result<String, StoreError> {
        use base64::Engine as _;
        let secret = random_token(24);
        let ticket = base64::engine::general_purpose::STANDARD
            .encode(format!("{user_id}|{persona_id}|{secret}"));
        self.store_ticket(&ticket, user_id, persona_id, challenge, ttl)
            .await?;
        Ok(ticket)
    }

    /// Stores a ticket made elsewhere (replays of recorded sessions, published test vectors).
    pub async fn store_ticket(
        &self,
        ticket: &str,
        user_id: i64,
        persona_id: i64,
        challenge: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        sqlx::query(
            "INSERT INTO tickets (ticket, user_id, persona_id, challenge, expires_ms) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(ticket)
        .bind(user_id)
        .bind(persona_id)
        .bind(challenge)
        .bind(now_ms().saturating_add(ttl_ms))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What a ticket stands for, without using it up.
    pub async fn peek_ticket(&self, ticket: &str) -> Result<TicketGrant, TicketError> {
        let row = sqlx::query(
            "SELECT t.user_id, t.persona_id, p.name, t.challenge, t.expires_ms, t.used
             FROM tickets t JOIN personas p ON p.id = t.persona_id WHERE t.ticket = ?",
        )
        .bind(ticket)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Err(TicketError::Unknown);
        };
        if row.try_get::<i64, _>("used")? != 0 {
            return Err(TicketError::Used);
        }
        if row.try_get::<i64, _>("expires_ms")? <= now_ms() {
            return Err(TicketError::Expired);
        }
        Ok(TicketGrant {
            user_id: row.try_get("user_id")?,
            persona_id: row.try_get("persona_id")?,
            persona_name: row.try_get("name")?,
            challenge: row.try_get("challenge")?,
        })
    }

    /// Uses a ticket up: succeeds once, for an unexpired ticket.
    pub async fn consume_ticket(&self, ticket: &str) -> Result<TicketGrant, TicketError> {
        let grant = self.peek_ticket(ticket).await?;
        // The `used = 0` guard makes two racing consumers see one success.
        let done = sqlx::query("UPDATE tickets SET used = 1 WHERE ticket = ? AND used = 0")
            .bind(ticket)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(TicketError::Used);
        }
        Ok(grant)
    }

    /// Creates the test account (with its persona) if no account has its email yet.
    /// Returns whether it was created.
    pub async fn ensure_test_account(&self) -> Result<bool, StoreError> {
        if self.user_by_email(TEST_EMAIL).await?.is_some() {
            return Ok(false);
        }
        let user = match self.add_user(TEST_EMAIL, TEST_PASSWORD, TEST_NAME).await {
            Ok(u) => u,
            // Another process seeded it between the check and the insert.
            Err(StoreError::DuplicateEmail(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        match self.add_persona(user.id, TEST_PERSONA).await {
            Ok(_) | Err(StoreError::DuplicatePersona(_)) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Closes the pool (waits for connections to finish).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}

/// A random token of letters and digits.
pub fn random_token(len: usize) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| char::from(ALNUM[rand::random_range(0..ALNUM.len())]))
        .collect()
}
