//! `cargo run -p topology -- up [--replicas N] [--fault FAULT]`: starts the local topology for
//! a person to explore, prints the URLs, and stops everything on ctrl-c or SIGTERM.

use anyhow::{Context, Result, bail};
use topology::{Options, Topology};

fn usage() -> &'static str {
    "usage: topology up [--replicas N] [--fault MODE]   (MODE is applied to replica-1)"
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("up") {
        bail!("{}", usage());
    }
    let mut options = Options {
        monitoring: true,
        ..Options::default()
    };
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--replicas" => {
                options.replicas = rest
                    .next()
                    .context(usage())?
                    .parse()
                    .context("--replicas takes a number")?;
            }
            "--fault" => {
                let f = rest.next().context(usage())?;
                options
                    .extra_args
                    .push((0, vec!["--fault".into(), f.clone()]));
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    let topology = Topology::start(options).await?;
    println!("{}", topology.describe());
    println!("ctrl-c (or SIGTERM) stops everything");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    drop(topology);
    println!("stopped");
    Ok(())
}
