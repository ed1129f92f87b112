//! The seam between the scheduler and environments: [`Launch`] starts an environment for
//! a function and shuts one down. The [`Launcher`] implements it with real process trees;
//! the scheduler's tests with a fake that starts none.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::environment::{Environment, InitFailure, Launcher, StartError};
use crate::function::FunctionRecord;

pub trait Launch: Send + Sync + 'static {
    /// One environment.
    type Env: Send + Sync + 'static;

    /// Starts an environment for `function`; resolves once its process runs (the init
    /// phase goes on).
    fn start(
        &self,
        function: &FunctionRecord,
        provisioned: bool,
    ) -> impl Future<Output = Result<Arc<Self::Env>, StartError>> + Send;

    /// Waits for the end of the init phase, at most `limit`.
    fn wait_ready(
        &self,
        env: &Self::Env,
        limit: Duration,
    ) -> impl Future<Output = Result<Duration, InitFailure>> + Send;

    /// False once the environment's process has exited.
    fn is_alive(&self, env: &Self::Env) -> bool;

    /// Stops a healthy environment no longer needed: gracefully, within `grace`.
    fn shut_down(&self, env: &Arc<Self::Env>, grace: Duration);

    /// Kills a failed environment at once.
    fn destroy(&self, env: &Self::Env);

    /// Stops `envs` (server shutdown): asks them all to stop, waits up to `grace`, then
    /// kills what is left and waits until every one is cleaned up.
    fn stop_all(
        &self,
        envs: Vec<Arc<Self::Env>>,
        grace: Duration,
    ) -> impl Future<Output = ()> + Send;
}

impl Launch for Launcher {
    type Env = Environment;

    fn start(
        &self,
        function: &FunctionRecord,
        provisioned: bool,
    ) -> impl Future<Output = Result<Arc<Environment>, StartError>> + Send {
        Launcher::start(self, function, provisioned)
    }

    fn wait_ready(
        &self,
        env: &Environment,
        limit: Duration,
    ) -> impl Future<Output = Result<Duration, InitFailure>> + Send {
        env.wait_ready(limit)
    }

    fn is_alive(&self, env: &Environment) -> bool {
        env.is_alive()
    }

    fn shut_down(&self, env: &Arc<Environment>, grace: Duration) {
        env.shutdown(grace);
    }

    fn destroy(&self, env: &Environment) {
        env.destroy();
    }

    async fn stop_all(&self, envs: Vec<Arc<Environment>>, grace: Duration) {
        for env in &envs {
            env.terminate();
        }
        let deadline = tokio::time::Instant::now() + grace;
        for env in &envs {
            let _ = tokio::time::timeout_at(deadline, env.exited()).await;
        }
        for env in envs {
            env.destroy_now().await;
        }
    }
}
