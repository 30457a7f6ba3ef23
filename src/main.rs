// mimalloc: measured 1.3-1.5x faster SET and GET than glibc malloc here, and fewer bytes per
// item (bench/RESULTS.md); a cache server lives in its allocator (memcached has its own slabs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::ffi::OsString;
use std::process::ExitCode;

use caskade::config::{Config, LoadError};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let config = match Config::load(&args) {
        Ok(c) => c,
        // Usage errors exit 2, --help and --version 0, as clap decides.
        Err(LoadError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("caskade: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = config.validate() {
        eprintln!("caskade: {e}");
        return ExitCode::from(2);
    }
    caskade::logging::init(config.log_level());
    match caskade::server::run(config, args) {
        Ok(()) => ExitCode::SUCCESS,
        // Printed once, as the errors above are: on stderr, which is the log's stream too
        // (and the journal's under systemd), whatever the log level.
        Err(e) => {
            eprintln!("caskade: {e}");
            ExitCode::FAILURE
        }
    }
}
