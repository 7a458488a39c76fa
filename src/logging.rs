//! Log output: `tracing` lines (text or JSON) to stderr through a writer thread, so a worker
//! that logs (a close line, a warning) never blocks on a slow or full stderr pipe. Lines
//! beyond [`BUFFERED_LINES`] waiting to be written are dropped, not queued without bound.
//! Call [`flush`] before `process::exit` so the last lines (why it exits) are written.

use std::sync::Mutex;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

use crate::config::LogFormat;

/// Lines waiting for the writer thread at most (about 2 MB of typical lines).
pub const BUFFERED_LINES: usize = 8192;

static GUARD: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Install the subscriber: level from `HOLDFAST_LOG` (default `info`), `format` lines.
pub fn init(format: LogFormat) {
    // The writer thread takes no signals (see `with_signals_blocked`).
    let (writer, guard) = crate::io::sys::with_signals_blocked(|| {
        NonBlockingBuilder::default()
            .buffered_lines_limit(BUFFERED_LINES)
            .lossy(true)
            .thread_name("holdfast-log")
            .finish(std::io::stderr())
    });
    *GUARD.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOLDFAST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: a pipe or a file gets plain `key=value` text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Write out every line logged so far (and stop the writer thread: later lines are lost).
pub fn flush() {
    drop(GUARD.lock().unwrap_or_else(|p| p.into_inner()).take());
}
