//! The `c300x-bridge` command line: run | demo | sim | config | check.
//! Exit codes: 0 ok (also after SIGTERM/Ctrl-C), 1 runtime failure (a component of the bridge
//! that died is named in one log line), 2 bad configuration (one line naming the key).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use c300x_bridge::app;
use c300x_bridge::config::{self, Config, Sources};
use c300x_bridge::sim::{SimConfig, SimPanel, Simulator};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "c300x-bridge",
    version,
    about = "BTicino Classe 300X intercom → Home Assistant (MQTT, RTSP, HLS)"
)]
struct Cli {
    #[command(flatten)]
    sources: SourceArgs,
    #[command(subcommand)]
    command: Command,
}

/// Where the configuration comes from (lowest priority first: options.json, file, env, flags).
#[derive(Args, Debug)]
struct SourceArgs {
    /// A YAML configuration file.
    #[arg(long, global = true, env = "C300X_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The Home Assistant add-on options (normally /data/options.json).
    #[arg(long, global = true, env = "C300X_OPTIONS_JSON", value_name = "FILE")]
    options: Option<PathBuf>,
    /// Override one option, e.g. `--set linger_seconds=30` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Shorthand for `--set intercom_host=…`.
    #[arg(long, global = true)]
    intercom_host: Option<String>,
    /// Shorthand for `--set sip_domain=…`.
    #[arg(long, global = true)]
    sip_domain: Option<String>,
    /// Shorthand for `--set log_level=…`.
    #[arg(long, global = true)]
    log_level: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the bridge against a real intercom.
    Run,
    /// Run the built-in C300X simulator and the bridge together: no intercom needed.
    Demo,
    /// Run the C300X simulator alone, for a bridge (or any SIP client) to talk to.
    Sim(SimArgs),
    /// Show the effective configuration (passwords masked).
    Config {
        /// Print it (the default and only action).
        #[arg(long)]
        print: bool,
    },
    /// Check the intercom set-up step by step (SIP reachability, registration, test call).
    Check(CheckArgs),
    /// MQTT maintenance: `--remove` deletes the device from Home Assistant (empty retained configs).
    Mqtt {
        /// Remove every discovery config this bridge published.
        #[arg(long)]
        remove: bool,
    },
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Also send `GetAswmStatus!` (reads the answering machine state; operates nothing).
    #[arg(long)]
    message: bool,
    /// Also place a test view call (switches the outdoor camera on briefly).
    #[arg(long)]
    call: bool,
    /// Length of the test call in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

#[derive(Args, Debug)]
struct SimArgs {
    /// SIP port (TCP and UDP).
    #[arg(long, default_value_t = 5060)]
    sip_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// The flexisip domain the simulated unit serves.
    #[arg(long, default_value = "1234567.bs.iotleg.com")]
    domain: String,
    /// Delay between 180 Ringing and 200 OK, in milliseconds.
    #[arg(long, default_value_t = 200)]
    answer_delay_ms: u64,
    /// Hang up a call after this many seconds without RTP from the bridge.
    #[arg(long, default_value_t = 30)]
    no_rtp_timeout: u64,
    /// Press the doorbell every N seconds (0 = never): panel 20, or each `--panel` in turn.
    #[arg(long, default_value_t = 0)]
    ring_every: u64,
    /// An entrance panel, `name=devaddr` (repeat for several): its name is drawn into its
    /// picture, and with two or more each ring says which panel rang (`a=DEVADDR` in its SDP).
    #[arg(long = "panel", value_name = "NAME=DEVADDR", value_parser = parse_sim_panel)]
    panels: Vec<SimPanel>,
}

fn parse_sim_panel(text: &str) -> Result<SimPanel, String> {
    let (name, devaddr) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected NAME=DEVADDR, e.g. front=20"))?;
    let devaddr = devaddr
        .trim()
        .parse::<u8>()
        .map_err(|_| format!("`{text}`: DEVADDR must be a number from 0 to 255"))?;
    if name.trim().is_empty() {
        return Err(format!("`{text}`: the name is empty"));
    }
    Ok(SimPanel::new(name.trim(), devaddr))
}

fn main() -> ExitCode {
    // Before any thread exists (the allocator's arenas are per thread).
    c300x_bridge::app::memory::tune();
    let cli = Cli::parse();
    let sources = match sources(&cli.sources) {
        Ok(s) => s,
        Err(e) => return config_error(&e),
    };
    let mut cfg = match config::load(&sources) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    if let Command::Config { .. } = cli.command {
        print!("{}", cfg.to_masked_yaml());
        return ExitCode::SUCCESS;
    }
    if matches!(cli.command, Command::Run | Command::Check(_))
        && let Err(e) = cfg.require_intercom()
    {
        return config_error(&e);
    }
    init_tracing(&cfg, matches!(cli.command, Command::Check(_)));
    // The add-on (options from the Supervisor) is private by default: see config::generated.
    if matches!(cli.command, Command::Run)
        && let Some(dir) = sources.options_json.as_ref().and_then(|p| p.parent())
    {
        match config::generated::apply(&mut cfg, dir) {
            Ok(config::generated::Outcome::Created(path)) => {
                tracing::info!(file = %path.display(), "no credentials configured: generated a password and an API token (shown on the add-on's page)")
            }
            Ok(config::generated::Outcome::Loaded(path)) => {
                tracing::info!(file = %path.display(), "using the generated credentials")
            }
            Ok(config::generated::Outcome::Configured) => {}
            Err(e) => return config_error(&e),
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = shutdown_on_signal();
        match cli.command {
            Command::Run => app::run(cfg, shutdown).await.map_err(anyhow::Error::from),
            Command::Demo => demo(cfg, shutdown).await,
            Command::Sim(args) => sim(args, shutdown).await,
            Command::Check(args) => check(cfg, args).await,
            Command::Mqtt { remove } => mqtt_command(cfg, remove).await,
            Command::Config { .. } => Ok(()),
        }
    });
    // Whatever a stopped component left behind (a blocking DNS lookup, a stuck decoder) must
    // not hold the exit: the shutdown itself is bounded (app.rs), so is this.
    runtime.shutdown_timeout(Duration::from_millis(300));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Logged once, naming the component, when it happened.
        Err(e)
            if matches!(
                e.downcast_ref::<app::AppError>(),
                Some(app::AppError::ComponentDied { .. })
            ) =>
        {
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn sources(args: &SourceArgs) -> Result<Sources, config::ConfigError> {
    let mut cli = Vec::new();
    for kv in &args.set {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(config::ConfigError::Invalid {
                key: "--set".to_owned(),
                value: kv.clone(),
                origin: config::Origin::Cli,
                allowed: "expected KEY=VALUE, e.g. --set linger_seconds=30".to_owned(),
            });
        };
        cli.push((k.trim().to_owned(), v.to_owned()));
    }
    for (key, v) in [
        ("intercom_host", &args.intercom_host),
        ("sip_domain", &args.sip_domain),
        ("log_level", &args.log_level),
    ] {
        if let Some(v) = v {
            cli.push((key.to_owned(), v.clone()));
        }
    }
    Ok(Sources::from_process_env(
        args.config.clone(),
        args.options.clone(),
        cli,
    ))
}

fn config_error(e: &config::ConfigError) -> ExitCode {
    eprintln!("config error: {e}");
    ExitCode::from(2)
}

/// Logs go to stderr (stdout carries the banners and `check`'s report), with colours only on a
/// terminal (and never with `NO_COLOR`). `check` logs warnings only, unless debug/trace is asked.
fn init_tracing(cfg: &Config, quiet: bool) {
    use std::io::IsTerminal;
    let level = match cfg.log_level {
        config::LogLevel::Info if quiet => "warn",
        other => other.as_str(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},rsipstack=warn")));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Cancelled on Ctrl-C or SIGTERM; everything shuts down from this one token. The handlers are
/// installed here, before anything is printed, so a signal sent right after a banner line is never
/// taken by the default action (which would kill the process without its orderly stop).
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::spawn(async move {
                    tokio::select! {
                        _ = int.recv() => {},
                        _ = term.recv() => {},
                    }
                    tracing::info!("shutting down");
                    t.cancel();
                });
                return token;
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cannot install the SIGINT/SIGTERM handlers ({e}); Ctrl-C only");
            }
        }
    }
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}

async fn mqtt_command(cfg: Config, remove: bool) -> anyhow::Result<()> {
    use c300x_bridge::mqtt::{MqttSettings, remove_device};
    if !remove {
        anyhow::bail!("nothing to do: use `c300x-bridge mqtt --remove`");
    }
    let settings = match MqttSettings::from_config(&cfg) {
        Some(s) => s,
        None => MqttSettings::from_supervisor()
            .await?
            .ok_or_else(|| anyhow::anyhow!("no MQTT broker: set mqtt_url"))?,
    };
    remove_device(&settings, &cfg).await?;
    println!("Removed the device's discovery configs from the broker.");
    Ok(())
}

async fn check(cfg: Config, args: CheckArgs) -> anyhow::Result<()> {
    let opts = c300x_bridge::intercom::check::Options {
        message: args.message,
        call: args
            .call
            .then(|| Duration::from_secs(args.seconds.clamp(1, 60))),
    };
    println!(
        "Checking the intercom at {}:{} ({}) as {}@{}",
        cfg.intercom_host.as_deref().unwrap_or_default(),
        cfg.intercom_sip_port,
        cfg.sip_transport.as_str(),
        cfg.sip_user,
        cfg.sip_domain.as_deref().unwrap_or_default()
    );
    let steps = c300x_bridge::intercom::check::run(&cfg, &opts, |s| println!("{s}")).await;
    let failed = steps
        .iter()
        .filter(|s| s.status == c300x_bridge::intercom::check::Status::Fail)
        .count();
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    println!("All checks passed.");
    Ok(())
}

async fn demo(mut cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    // The simulated installation has the configured panels, each drawing its name.
    let sim = Simulator::start(SimConfig {
        panels: cfg
            .panels
            .iter()
            .map(|p| SimPanel::new(&p.name, p.devaddr))
            .collect(),
        ..SimConfig::default()
    })
    .await?;
    let addr = sim.sip_addr();
    cfg.intercom_host = Some(addr.ip().to_string());
    cfg.intercom_sip_port = addr.port();
    cfg.sip_domain = Some(sim.domain().to_owned());
    cfg.advertise_address.get_or_insert(addr.ip());
    // Ring pictures and clips: a temp folder unless clip_dir was set (/media/c300x is the add-on's).
    if cfg.clip_dir == Config::default().clip_dir {
        cfg.clip_dir = std::env::temp_dir().join("c300x-bridge-demo");
    }
    // The page's "ring the doorbell" button presses the simulated panel.
    let (ring_tx, mut ring_rx) = tokio::sync::mpsc::unbounded_channel::<u8>();
    let sim = std::sync::Arc::new(sim);
    let ringer = sim.clone();
    tokio::spawn(async move {
        while let Some(devaddr) = ring_rx.recv().await {
            if let Err(e) = ringer.ring(devaddr).await {
                tracing::warn!("demo ring: {e}");
            }
        }
    });
    println!(
        "c300x-bridge demo: a simulated C300X is answering at sip:{addr} (domain {})",
        sim.domain()
    );
    for line in app::endpoints(&cfg) {
        println!("  {line}");
    }
    for line in demo_steps(&cfg) {
        println!("{line}");
    }
    let demo = c300x_bridge::servers::http::DemoHooks { ring: ring_tx };
    let result = app::run_with(cfg, shutdown, Some(demo)).await;
    if let Ok(sim) = std::sync::Arc::try_unwrap(sim) {
        let _ = tokio::time::timeout(Duration::from_millis(500), sim.shutdown()).await;
    }
    Ok(result?)
}

/// What to press in `demo`, in order (the banner; logs follow on stderr).
fn demo_steps(cfg: &Config) -> Vec<String> {
    let host = cfg
        .advertise_address
        .map_or_else(|| "127.0.0.1".to_owned(), |a| a.to_string());
    let panel = cfg.panels.first().map_or("doorbell", |p| p.name.as_str());
    vec![
        "Try it:".to_owned(),
        format!(
            "  1. open http://{host}:{}/ and press \"Watch live\": the bridge calls the simulated panel and plays its camera",
            cfg.http_port
        ),
        "  2. press \"Ring the doorbell (demo)\": the page shows the ring with its picture; \"Answer\", \"Reject\" and \"Unlock\" act on it".to_owned(),
        format!(
            "  3. or play rtsp://{host}:{}/{panel} with `ffplay -rtsp_transport tcp` or `mpv`",
            cfg.rtsp_port
        ),
        format!(
            "  4. ring pictures (and clips, with ring_clip_seconds) are kept in {}",
            cfg.clip_dir.display()
        ),
        "Press Ctrl-C to stop.".to_owned(),
    ]
}

async fn sim(args: SimArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg = SimConfig {
        domain: args.domain,
        bind: SocketAddr::new(args.bind, args.sip_port),
        answer_delay: Duration::from_millis(args.answer_delay_ms),
        no_rtp_timeout: Duration::from_secs(args.no_rtp_timeout.max(1)),
        panels: args.panels.clone(),
        ..SimConfig::default()
    };
    let ring_order: Vec<u8> = if args.panels.is_empty() {
        vec![20]
    } else {
        args.panels.iter().map(|p| p.devaddr).collect()
    };
    let mut rings = 0usize;
    let sim = Simulator::start(cfg).await?;
    println!(
        "C300X simulator: SIP over TCP and UDP at sip:{} (domain {})",
        sim.sip_addr(),
        sim.domain()
    );
    println!("Point a bridge at it with:");
    for (k, v) in sim.bridge_settings() {
        println!("  {k}: {v}");
    }
    println!("Press Ctrl-C to stop.");
    let mut ticker =
        (args.ring_every > 0).then(|| tokio::time::interval(Duration::from_secs(args.ring_every)));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = async { if let Some(t) = ticker.as_mut() { t.tick().await; } else { std::future::pending::<()>().await } } => {
                let devaddr = ring_order[rings % ring_order.len()];
                rings += 1;
                match sim.ring(devaddr).await {
                    Ok(r) => println!("ring (panel {devaddr}): INVITE to alluser sent to {} contact(s)", r.forks),
                    Err(e) => println!("ring: {e}"),
                }
            }
        }
    }
    sim.shutdown().await;
    Ok(())
}
