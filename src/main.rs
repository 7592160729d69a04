use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = procinst::cli::Cli::parse();
    let telemetry = procinst::telemetry::init(cli.settings.log_format);
    // One crypto provider for every rustls user in the process, lapin's
    // included, whatever features the dependency graph switches on.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match runtime_for(&cli.command) {
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

/// The worker's stages run as one task (`Worker::session` joins them), so
/// it runs on a single-threaded runtime: its database connections' I/O
/// then runs on the same thread, instead of costing two thread wake-ups
/// per round trip (measured: a tenth of the worker's CPU per request). The
/// parsing of a large batch goes to the blocking pool, so that a second
/// core takes it while this thread drives the broker and the database; the
/// worker scales out by process, as the README says. The other commands
/// keep the multi-threaded runtime: the load generator, say, drives
/// publishing and reading replies side by side.
fn runtime_for(command: &procinst::cli::Command) -> std::io::Result<tokio::runtime::Runtime> {
    match command {
        procinst::cli::Command::Run => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Runtime::new(),
    }
}
