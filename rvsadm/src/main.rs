//! `rvsadm`: ipvsadm's command line for rvsd. Wires the process (arguments, stdin, stdout,
//! stderr, exit code), rvsd's API socket and the C library's name lookups to
//! [`rvsadm::run`].

use std::{io::Write, process::ExitCode, time::Duration};

use rvs_api::{
    Applied, Client, ClientError, ConnectionList, DEFAULT_SOCKET, Op, ServiceList, Status,
};
use rvs_config::Config;
use rvsadm::{Api, SystemResolver, run, split_rvs_options};

/// How long one API request may take before rvsadm gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// [`Api`] over rvsd's Unix socket, one blocking call at a time.
struct SocketApi {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl SocketApi {
    fn call<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        self.rt.block_on(async {
            tokio::time::timeout(REQUEST_TIMEOUT, f)
                .await
                .unwrap_or_else(|_| {
                    Err(ClientError::Http(format!(
                        "no answer within {} s",
                        REQUEST_TIMEOUT.as_secs()
                    )))
                })
        })
    }
}

impl Api for SocketApi {
    fn apply(&mut self, ops: Vec<Op>) -> Result<Applied, ClientError> {
        self.call(self.client.apply(ops))
    }

    fn services(&mut self) -> Result<ServiceList, ClientError> {
        self.call(self.client.services())
    }

    fn connections(&mut self) -> Result<ConnectionList, ClientError> {
        self.call(self.client.connections())
    }

    fn status(&mut self) -> Result<Status, ClientError> {
        self.call(self.client.status())
    }

    fn config(&mut self) -> Result<Config, ClientError> {
        self.call(
            self.client
                .request::<(), _>(hyper::Method::GET, "/v1/config", None),
        )
    }

    fn sync_status(&mut self) -> Result<rvs_api::SyncStatus, ClientError> {
        self.call(self.client.sync_status())
    }

    fn sync_start(
        &mut self,
        config: &rvs_api::SyncDaemonConfig,
    ) -> Result<rvs_api::SyncStatus, ClientError> {
        self.call(self.client.sync_start(config))
    }

    fn sync_stop(&mut self, role: rvs_api::SyncRole) -> Result<rvs_api::SyncStatus, ClientError> {
        self.call(self.client.sync_stop(role))
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from((code & 0xff) as u8)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (argv, opts) = match split_rvs_options(argv) {
        Ok(x) => x,
        Err(f) => {
            eprint!("{}", f.stderr);
            return exit(f.code);
        }
    };
    let socket = opts
        .socket
        .or_else(|| std::env::var("RVS_SOCKET").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_SOCKET.to_string());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rvsadm: cannot start the async runtime: {e}");
            return exit(2);
        }
    };
    let mut api = SocketApi {
        rt,
        client: Client::new(socket),
    };
    let outcome = run(
        &argv,
        opts.json,
        &mut api,
        &SystemResolver::new(),
        &mut std::io::stdin().lock(),
    );
    // A closed pipe (`rvsadm -Ln | head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(outcome.stdout.as_bytes());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
    exit(outcome.code)
}
