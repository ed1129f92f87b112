//! A `provided.al2023` function written with the official `lambda_runtime` crate.
//! Build it with `cargo build --release -p hello-rust`; the binary is `target/release/bootstrap`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    let name = payload
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("world");
    if name == "error" {
        return Err("asked to fail".into());
    }
    println!("Saying hello to {name}");
    Ok(json!({
        "message": format!("Hello, {name}!"),
        "requestId": context.request_id,
        "functionArn": context.invoked_function_arn,
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
