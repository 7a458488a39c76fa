//! Standard output for the command-line tools (`holdfast`'s commands, `holdfast-loadgen`,
//! `holdfast-bench`): a reader that went away (`holdfast plan | head -3`) ends the command
//! quietly with status 0, where `println!` panicked with a backtrace and status 101. Any other
//! write error ends it with a line on stderr and status 1.
//!
//! The server does not print through this: it logs, and a closed stdout must not stop it.

use std::io::{ErrorKind, Write};

/// Write `args` to stdout and flush; see the module comment for what a failed write does.
pub fn emit(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        drop(out);
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        let arg0 = std::env::args_os().next().unwrap_or_default();
        let path = std::path::Path::new(&arg0);
        let name = std::path::Path::new(path.file_name().unwrap_or(arg0.as_ref()));
        let _ = writeln!(
            std::io::stderr(),
            "{}: writing to stdout: {e}",
            name.display()
        );
        std::process::exit(1);
    }
}

/// `println!` through [`emit`]: a closed stdout ends the command quietly instead of panicking.
#[macro_export]
macro_rules! say {
    () => { $crate::stdout::emit(format_args!("\n")) };
    ($($t:tt)*) => { $crate::stdout::emit(format_args!("{}\n", format_args!($($t)*))) };
}
