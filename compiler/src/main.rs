//! `fhec`: the command-line edge of the compiler (verbs live in `cli/`, one file each).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Writing to a closed pipe (`fhec inspect | head`) ends the process quietly, as
    // command-line tools do, instead of panicking inside println!.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    runtime::sys::tune_allocator();
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
