//! The processes of a Ballista cluster: `switchyard scheduler` plans queries and hands their
//! stages out; `switchyard executor` registers with a scheduler and runs them, reading the
//! data dir itself. Both read it through its committed view ([`super::runtime`]); a bucket's
//! credentials, region and endpoint come from the usual `AWS_*` environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use super::{ballista_err, runtime};
use crate::error::{Error, Result};
use crate::store::Location;

/// Default address of the scheduler.
pub const SCHEDULER_LISTEN: &str = "127.0.0.1:50050";
/// Default address of an executor's Arrow Flight service.
pub const EXECUTOR_LISTEN: &str = "127.0.0.1:50051";
/// Default address of an executor's gRPC service.
pub const EXECUTOR_GRPC_LISTEN: &str = "127.0.0.1:50052";

/// Runs a scheduler on `listen` for the data dir `loc` until the process is stopped. Prints
/// `switchyard scheduler listening on df://ADDR` once it accepts connections.
pub async fn scheduler(loc: Location, listen: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Unavailable(format!("scheduler --listen {listen}: {e}")))?;
    let bound = listener.local_addr()?;
    let loc = Arc::new(loc);
    let config = SchedulerConfig {
        bind_host: bound.ip().to_string(),
        bind_port: bound.port(),
        external_host: bound.ip().to_string(),
        ..Default::default()
    }
    .with_override_session_builder(Arc::new(
        move |config: SessionConfig| -> datafusion::error::Result<SessionState> {
            let state = ballista_core::utils::default_session_builder(config)?;
            Ok(SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(runtime(&loc)?)
                .build())
        },
    ));
    config.validate().map_err(ballista_err)?;
    let config = Arc::new(config);
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(ballista_err)?;
    let server = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config)
        .await
        .map_err(ballista_err)?;
    println!("switchyard scheduler listening on df://{bound}");
    start_grpc_service_with_listener(listener, server)
        .await
        .map_err(ballista_err)
}

/// `HOST:PORT` of a scheduler given as `df://HOST:PORT` or `HOST:PORT`.
fn scheduler_addr(s: &str) -> Result<(String, u16)> {
    let hp = s.strip_prefix("df://").unwrap_or(s);
    let (host, port) = hp
        .rsplit_once(':')
        .ok_or_else(|| Error::Invalid(format!("scheduler {s:?}: give it as HOST:PORT")))?;
    let port = port
        .parse()
        .map_err(|_| Error::Invalid(format!("scheduler {s:?}: bad port")))?;
    Ok((host.to_string(), port))
}

/// An executor's settings (`switchyard executor`).
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `HOST:PORT` or `df://HOST:PORT`.
    pub scheduler: String,
    /// The Arrow Flight service, which serves the executor's results.
    pub listen: SocketAddr,
    /// The gRPC service, which takes tasks.
    pub grpc_listen: SocketAddr,
    /// Tasks run at once (`None`: the machine's cores).
    pub vcores: Option<usize>,
    /// Where shuffle files go (`None`: a directory under the system's temporary directory).
    pub work_dir: Option<PathBuf>,
}

/// Runs an executor for the data dir `loc` until the process is stopped. Prints
/// `switchyard executor listening on ADDR` as it starts.
pub async fn executor(loc: Location, o: ExecutorOptions) -> Result<()> {
    let (scheduler_host, scheduler_port) = scheduler_addr(&o.scheduler)?;
    if o.listen.ip() != o.grpc_listen.ip() {
        return Err(Error::Invalid(
            "the executor's --listen and --grpc-listen must share one address".into(),
        ));
    }
    let work_dir = o.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "switchyard-executor-{}-{}",
            o.listen.port(),
            std::process::id()
        ))
    });
    std::fs::create_dir_all(&work_dir).map_err(|e| Error::io(&work_dir, e))?;
    let work_dir = work_dir
        .to_str()
        .ok_or_else(|| Error::Invalid(format!("--work-dir {work_dir:?} is not UTF-8")))?
        .to_string();
    let loc = Arc::new(loc);
    let d = ExecutorProcessConfig::default();
    let config = ExecutorProcessConfig {
        bind_host: o.listen.ip().to_string(),
        external_host: Some(o.listen.ip().to_string()),
        port: o.listen.port(),
        grpc_port: o.grpc_listen.port(),
        scheduler_host,
        scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: o.vcores.unwrap_or(d.vcores),
        work_dir: Some(work_dir),
        executor_heartbeat_interval_seconds: 5,
        override_runtime_producer: Some(Arc::new(move |_config: &SessionConfig| runtime(&loc))),
        ..d
    };
    println!("switchyard executor listening on {}", o.listen);
    start_executor_process(Arc::new(config))
        .await
        .map_err(ballista_err)
}
