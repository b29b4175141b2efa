//! `venue-image-uploader`: see `venue-image-uploader --help`.

use clap::Parser;
use venue_image_uploader::{app, cli::Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    app::init_logging(cli.log_format, &cli.log);
    app::main(cli).await.into()
}
