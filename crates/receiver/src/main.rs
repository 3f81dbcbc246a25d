//! `receiver`: API Gateway → validate the export request, record the job, queue it.
//! Also cancels jobs (`DELETE /exports/{id}`) and serves the original sample's `POST /product`.

use export_aws::lambda::{self, Error};
use export_aws::{functions, Clients, Env};
use export_core::http::{receiver_router, with_json_fallbacks};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_logging();
    let clients = Clients::from_environment().await?;
    let mut env = Env::from_process();
    let submissions = functions::receiver(&mut env, &clients);
    let role_owner = functions::role_owner(&mut env);
    env.finish()?;
    lambda::serve_http(
        with_json_fallbacks(receiver_router(submissions)),
        role_owner,
    )
    .await
}
