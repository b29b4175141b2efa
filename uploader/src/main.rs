//! `venue-image-uploader`: see `venue-image-uploader --help`.

use clap::Parser;
use venue_image_uploader::{app, cli::Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    app::init_logging(cli.log_format, &cli.log);
    match app::main(cli).await {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e}");
            e.exit.into()
        }
    }
}
