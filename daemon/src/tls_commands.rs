//! `probemesh tls ca create` and `probemesh tls cert create`.

use crate::cli::{TlsCaCommand, TlsCertCommand, TlsCommand};
use probemesh_gossip::tls;
use std::process::ExitCode;

/// Runs one TLS command; exit code 0 on success, 1 on failure.
pub fn run(cmd: TlsCommand) -> ExitCode {
    let result = match cmd {
        TlsCommand::Ca {
            command: TlsCaCommand::Create { out },
        } => tls::create_ca(&out).map(|(c, k)| {
            println!("created {} and {}", c.display(), k.display());
            println!(
                "keep {} secret: whoever holds it can add nodes to the cluster",
                k.display()
            );
        }),
        TlsCommand::Cert {
            command:
                TlsCertCommand::Create {
                    ca,
                    node,
                    ips,
                    dns,
                    out,
                },
        } => {
            if let Err(e) = crate::config::validate_node_id(&node) {
                eprintln!("error: --node: {e}");
                return ExitCode::from(2);
            }
            tls::create_node_cert(&ca, &node, &ips, &dns, &out).map(|(c, k)| {
                println!("created {} and {}", c.display(), k.display());
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
