//! The commands behind the CLI: [`main`] runs the one the command line names, from a
//! table of one line per subcommand, and maps a failure to its exit status.
//!
//! - `run`, the sidecar (the worker, metrics, the scheduled scan): in [`run`];
//! - `once` and `retry`, which drain the queue with a progress bar: in [`drain`];
//! - `enqueue`, `scan`, `migrate`, `rates`, `resume`, `force-retry`: in [`admin`];
//! - `stats` and its tables ([`render_stats`]): in [`stats`];
//! - `check`: in [`check`];
//! - `dashboard`: in [`crate::dashboard`];
//! - what `run`, `once` and `retry` share (the worker over the real queue and HTTP
//!   clients, the tasks beside it: `LISTEN`, the queue depth gauge): in [`work`];
//! - what commands build from the settings (the database connection, the HTTP clients,
//!   the worker's settings), and [`check_settings`]: in [`setup`].

pub mod admin;
pub mod check;
pub mod drain;
pub mod run;
pub mod setup;
pub mod stats;
pub mod work;

use crate::cli::{Cli, Command};
use crate::error::AppError;
use crate::exit::Exit;

pub use admin::MIGRATIONS;
pub use setup::{check_settings, init_logging};
pub use stats::render_stats;

/// Runs the command `cli` names; returns the process's exit status (a failure's
/// message goes to stderr).
pub async fn main(cli: Cli) -> Exit {
    match command(&cli).await {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit
        }
    }
}

/// The table of subcommands, after the settings every command refuses up front.
async fn command(cli: &Cli) -> Result<Exit, AppError> {
    check_settings(cli)?;
    match &cli.command {
        Command::Run(args) => run::run(cli, args).await,
        Command::Once(args) => drain::once(cli, args).await,
        Command::Retry { venue, worker } => drain::retry(cli, worker, *venue).await,
        Command::Enqueue { venue } => admin::enqueue(cli, *venue).await,
        Command::Scan => admin::scan(cli).await,
        Command::Stats { json } => stats::stats(cli, *json).await,
        Command::Dashboard(args) => crate::dashboard::run(cli, args).await,
        Command::Migrate => admin::migrate(cli).await,
        Command::Rates { rates } => admin::rates(cli, rates).await,
        Command::Resume { provider } => admin::resume(cli, provider).await,
        Command::ForceRetry { venue, url } => admin::force_retry(cli, *venue, url).await,
        Command::Check {
            imagekit,
            skip_imagekit,
        } => check::check(cli, imagekit, *skip_imagekit).await,
    }
}
