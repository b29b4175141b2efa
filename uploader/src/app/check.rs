//! `check`: the database, the extension version, the role's grants, and the ImageKit key.

use super::setup::{connect, imagekit};
use crate::cli::{Cli, ImageKitArgs};
use crate::db::Db;
use crate::error::AppError;
use crate::exit::Exit;
use venue_images_core::roles::{executable, Role};

/// `venue-image-uploader check [--skip-imagekit]`: prints `ok`, `FAIL` or `skip` per
/// check; exit status 1 when one failed.
pub async fn check(cli: &Cli, ik: &ImageKitArgs, skip_imagekit: bool) -> Result<Exit, AppError> {
    let queue = connect(cli, None).await?;
    let database_ok = database(&queue).await;
    let imagekit_ok = if skip_imagekit {
        println!("skip ImageKit credentials");
        true
    } else {
        imagekit_key(ik).await
    };
    Ok(if database_ok && imagekit_ok {
        Exit::Ok
    } else {
        Exit::Failure
    })
}

/// The extension, its version and the uploader role's grants.
async fn database(db: &Db) -> bool {
    match db
        .check(&executable(Role::Uploader), Role::Uploader.as_str())
        .await
    {
        Ok(notes) => {
            notes.iter().for_each(|n| println!("ok   {n}"));
            true
        }
        Err(e) => {
            println!("FAIL {e}");
            false
        }
    }
}

/// Whether ImageKit accepts the private key (nothing is uploaded).
async fn imagekit_key(ik: &ImageKitArgs) -> bool {
    match imagekit(ik) {
        Ok(client) => match client.check_credentials().await {
            Ok(()) => {
                println!(
                    "ok   ImageKit accepted the private key ({})",
                    ik.imagekit_upload_url
                );
                true
            }
            Err(f) => {
                println!("FAIL ImageKit: {f}");
                false
            }
        },
        Err(e) => {
            println!("FAIL {e}");
            false
        }
    }
}
