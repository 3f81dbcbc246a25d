//! `processor`: requests queue → render each job's UNLOAD and start it on the Data API.

use export_aws::lambda::{self, Error};
use export_aws::{functions, Clients, Env};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_logging();
    let clients = Clients::from_environment().await?;
    let mut env = Env::from_process();
    let processor = functions::processor(&mut env, &clients);
    let max_receives = functions::max_receives(&mut env);
    env.finish()?;
    lambda::serve_queue(processor, max_receives).await
}
