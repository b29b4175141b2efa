//! `venue-image-uploader` binary (the CLI comes with the worker).

fn main() {
    eprintln!("venue-image-uploader: not wired yet");
}
