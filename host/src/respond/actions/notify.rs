//! Tell the user or the admins. For the user on macOS: an `osascript` dialog in the
//! console user's session (`launchctl asuser`), the text passed as arguments to a fixed
//! script — never spliced into AppleScript, so a message cannot run code. Elsewhere, and
//! for the admins, the notice goes to the log and the action's record.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::respond::actions::Outcome;
use crate::respond::actions::script::run_bounded;

/// Dialogs on screen at once, at most (each waits for the user on a thread of its own).
const MAX_OPEN_DIALOGS: usize = 4;
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// The fixed AppleScript: the title and body arrive as `argv`.
const DIALOG: &[&str] = &[
    "-e",
    "on run argv",
    "-e",
    "display dialog (item 2 of argv) with title (item 1 of argv) buttons {\"OK\"} default button 1 with icon caution giving up after 600",
    "-e",
    "end run",
];

/// Shows or records the notice.
pub fn notify(title: &str, body: &str, to_user: bool) -> Result<Outcome, String> {
    tracing::warn!(title = %title, body = %body, to_user, "ward notice");
    if !to_user {
        return Ok(Outcome::new(
            "recorded for the admins (log and action record)",
        ));
    }
    if !cfg!(target_os = "macos") {
        return Ok(Outcome::new(
            "no user session notifier on this system: logged and recorded",
        ));
    }
    let uid = {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/dev/console")
            .map(|m| m.uid())
            .map_err(|e| format!("/dev/console: {e}"))?
    };
    if uid == 0 {
        return Ok(Outcome::new("no user is logged in: logged and recorded"));
    }
    let mut args = vec![
        "asuser".to_owned(),
        uid.to_string(),
        "/usr/bin/osascript".to_owned(),
    ];
    args.extend(DIALOG.iter().map(|s| (*s).to_owned()));
    // `--` ends osascript's options; and no argument may start with `-` in case it does
    // not (a body of `-e …` must stay text).
    args.push("--".into());
    for text in [
        crate::respond::actions::cut(title, 256),
        crate::respond::actions::cut(body, 2048),
    ] {
        args.push(if text.starts_with('-') {
            format!(" {text}")
        } else {
            text.to_owned()
        });
    }
    // The dialog waits for the user; the agent does not. A few at most at once.
    if OPEN.fetch_add(1, Ordering::AcqRel) >= MAX_OPEN_DIALOGS {
        OPEN.fetch_sub(1, Ordering::AcqRel);
        return Ok(Outcome::new(format!(
            "{MAX_OPEN_DIALOGS} dialogs are already on screen: logged and recorded"
        )));
    }
    std::thread::Builder::new()
        .name("ward-notify".into())
        .spawn(move || {
            let _ = run_bounded(
                Path::new("/bin/launchctl"),
                &args,
                &[],
                Duration::from_secs(660),
                4096,
            );
            OPEN.fetch_sub(1, Ordering::AcqRel);
        })
        .map_err(|e| {
            OPEN.fetch_sub(1, Ordering::AcqRel);
            format!("starting the dialog: {e}")
        })?;
    Ok(Outcome::new(format!("dialog shown to uid {uid}")))
}
