//! The local stack's options as the command line gives them: one `clap::Args` that the CLI's
//! `serve` and `demo` and the benchmarks flatten into their own commands.

use crate::faults::{FaultPlan, Faults};
use crate::sigv4::LocalIdentity;
use crate::sql_source::SqlSource;
use crate::tables::TableFile;
use crate::LocalConfig;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct StackOptions {
    /// Where all local state lives; delete it for a full reset.
    #[arg(long, default_value = ".export-local", env = "EXPORT_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Your catalogue: a directory with `catalog/*.sql`, and optionally `schema.sql` and
    /// `access.toml`. Without it, the demo's, built into the binary.
    #[arg(long, env = "EXPORT_SQL_DIR")]
    pub sql_dir: Option<PathBuf>,
    /// Your own table beside the demo's, `schema.name=path` (Parquet, or CSV with a header
    /// line); may be given more than once.
    #[arg(long = "table")]
    pub tables: Vec<TableFile>,
    /// TPC-H scale factor for orders and lineitem (customer is at least 0.1).
    #[arg(long, default_value_t = 0.01)]
    pub scale: f64,
    /// Extra identities, ACCESS_KEY:SECRET:ARN (alice and bob are always there).
    #[arg(long = "identity")]
    pub identities: Vec<String>,
    /// Concurrent processor and poller workers, each.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// How long a received message stays hidden before it is delivered again (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    pub visibility_timeout: Duration,
    /// How often the sweep looks for jobs that stopped moving, and how long a job must sit
    /// still before it does.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    pub sweep_every: Duration,
    #[arg(long, default_value = "300s", value_parser = crate::parse_duration)]
    pub sweep_after: Duration,
    /// How often the scheduler makes the subscriptions' runs that are due.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub subscription_tick: Duration,
    /// Export statements the warehouse runs at once; more wait QUEUED, callers taking turns.
    /// 0 starts every job as soon as a worker takes it.
    #[arg(long, default_value_t = export_core::service::admission::DEFAULT_SLOTS)]
    pub warehouse_slots: u32,
    /// Faults to inject into the services' calls of the ports, to try how failures are
    /// handled: `port.operation:transient=P,lost=P,permanent=P,latency=D;…`, `*` for any
    /// (see docs/RELIABILITY.md).
    #[arg(long, env = "EXPORT_FAULTS")]
    pub faults: Option<String>,
    /// The seed of the injected faults' random choices.
    #[arg(long, default_value_t = 1, env = "EXPORT_FAULT_SEED")]
    pub fault_seed: u64,
}

impl StackOptions {
    /// The stack's configuration; a fault plan or an identity that does not parse is an
    /// error naming its option.
    pub fn config(&self) -> Result<LocalConfig, String> {
        let mut config = LocalConfig::new(
            self.data_dir.clone(),
            SqlSource::from_option(self.sql_dir.as_deref()),
        );
        config.tables = self.tables.clone();
        config.scale = self.scale;
        config.processors = self.workers;
        config.pollers = self.workers;
        config.visibility_timeout = self.visibility_timeout;
        config.sweep_every = self.sweep_every;
        config.sweep_after = self.sweep_after;
        config.subscription_tick = self.subscription_tick;
        config.admission.slots = (self.warehouse_slots > 0).then_some(self.warehouse_slots);
        if let Some(plan) = &self.faults {
            let plan: FaultPlan = plan.parse().map_err(|e| format!("--faults: {e}"))?;
            config.faults = Some(Faults::new(plan, self.fault_seed));
        }
        for spec in &self.identities {
            config
                .identities
                .push(LocalIdentity::parse(spec).map_err(|e| format!("--identity: {e}"))?);
        }
        Ok(config)
    }
}
