//! `gamewire accounts ...`: manage the accounts database the emulated servers share.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args as ClapArgs, Subcommand};

use crate::security::Store;

/// Where the accounts database lives unless `--db` says otherwise.
pub const DEFAULT_DB: &str = "data/gamewire.db";

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The SQLite accounts database (created if missing).
    #[arg(long, global = true, default_value = DEFAULT_DB)]
    pub db: PathBuf,
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Subcommand, Debug)]
pub enum Action {
    /// Create an account.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// List the accounts.
    List,
    /// Set an account's password.
    Passwd {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
    },
    /// Disable an account (logins answer "account disabled").
    Disable {
        #[arg(long)]
        email: String,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let store = Store::open(&args.db)
            .await
            .with_context(|| format!("opening {}", args.db.display()))?;
        let result = action(&store, args.action).await;
        store.close().await;
        result
    })
}

async fn action(store: &Store, action: Action) -> anyhow::Result<ExitCode> {
    match action {
        Action::Add {
            email,
            password,
            name,
        } => {
            let user = store.add_user(&email, &password, &name).await?;
            println!(
                "added {} (id {}, {})",
                user.email, user.id, user.display_name
            );
        }
        Action::List => {
            println!(
                "{:<8} {:<32} {:<20} {:<9} created",
                "id", "email", "name", "state"
            );
            for u in store.list_users().await? {
                let state = if u.banned {
                    "banned"
                } else if !u.active {
                    "disabled"
                } else {
                    "active"
                };
                println!(
                    "{:<8} {:<32} {:<20} {:<9} {}",
                    u.id, u.email, u.display_name, state, u.created
                );
            }
        }
        Action::Passwd { email, password } => {
            store.set_password(&email, &password).await?;
            println!("password of {email} changed");
        }
        Action::Disable { email } => {
            store.disable(&email).await?;
            println!("{email} disabled");
        }
    }
    Ok(ExitCode::SUCCESS)
}
