//! `receiver`: API Gateway → validate the export request, record the job, queue it.
//! Also cancels jobs (`DELETE /exports/{id}`), serves the original sample's `POST /product`,
//! and keeps callers' subscriptions (`/subscriptions`).

use export_aws::lambda::{self, Error};
use export_aws::{functions, Clients, Env};
use export_core::http::{receiver_router, subscription_router, with_json_fallbacks};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_logging();
    let clients = Clients::from_environment().await?;
    let mut env = Env::from_process();
    let submissions = functions::receiver(&mut env, &clients);
    let subscriptions = functions::subscriptions(&mut env, &clients, submissions.clone());
    let role_owner = functions::role_owner(&mut env);
    env.finish()?;
    let routes = receiver_router(submissions).merge(subscription_router(subscriptions));
    lambda::serve_http(with_json_fallbacks(routes), role_owner).await
}
