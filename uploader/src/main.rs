//! `venue-image-uploader`: see `venue-image-uploader --help`.

use clap::Parser;
use venue_image_uploader::{app, cli::Cli};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    app::init_logging(cli.log_format, &cli.log);
    let code = match app::main(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.code
        }
    };
    std::process::exit(code);
}
