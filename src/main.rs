use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = procinst::cli::Cli::parse();
    let telemetry = procinst::telemetry::init(cli.settings.log_format);
    // One crypto provider for every rustls user in the process, lapin's
    // included, whatever features the dependency graph switches on.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("procinst: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(procinst::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // The one report of a fatal error, with its causes.
            tracing::error!(
                version = %env!("CARGO_PKG_VERSION"),
                error = %format!("{e:#}"),
                "procinst failed"
            );
            std::process::ExitCode::FAILURE
        }
    };
    drop(runtime);
    telemetry.shutdown();
    code
}
