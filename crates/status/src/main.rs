//! `status`: API Gateway → a job's latest state, its history, a fresh download link, the
//! caller's jobs and the catalogue. Also the original sample's `GET /product`.

use export_aws::lambda::{self, Error};
use export_aws::{functions, Clients, Env};
use export_core::http::{status_router, with_json_fallbacks};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_logging();
    let clients = Clients::from_environment().await?;
    let mut env = Env::from_process();
    let queries = functions::status(&mut env, &clients);
    let role_owner = functions::role_owner(&mut env);
    env.finish()?;
    lambda::serve_http(with_json_fallbacks(status_router(queries)), role_owner).await
}
