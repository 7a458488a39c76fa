use clap::{Parser, Subcommand};
use holdfast::config::{LogFormat, ServeConfig};
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Holdfast: a high-density WebSocket connection server on io_uring.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeConfig>),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOLDFAST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() {
    let args = match holdfast::config::merge_config_file(std::env::args().collect()) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("holdfast: {msg}");
            std::process::exit(2);
        }
    };
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Serve(cfg) => {
            init_logging(cfg.log_format);
            if let Err(msg) = holdfast::server::serve(*cfg) {
                tracing::error!("{msg}");
                eprintln!("holdfast: {msg}");
                std::process::exit(1);
            }
        }
    }
}
