//! `poller`: polls queue (its own follow-ups and the Data API's status-change events) →
//! follow the statement; when it finishes, package the parts, presign the archive, mail it.

use export_aws::lambda::{self, Error};
use export_aws::{functions, Clients, Env};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_logging();
    let clients = Clients::from_environment().await?;
    let mut env = Env::from_process();
    let poller = functions::poller(&mut env, &clients);
    let max_receives = functions::max_receives(&mut env);
    env.finish()?;
    lambda::serve_queue(poller, max_receives).await
}
