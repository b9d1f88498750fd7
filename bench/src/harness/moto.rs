//! moto's server for EventBridge, for the events section.

use std::process::Stdio;
use std::time::Duration;

use credits_shared::events::bus::Bus;

use super::cargo::workspace;

/// moto's server (EventBridge), as the events tests start it.
pub struct Moto {
    endpoint: String,
    child: std::process::Child,
}

impl Moto {
    /// `None` when the repository's virtualenv has no moto (`make deps` makes it).
    pub async fn start() -> Result<Option<Moto>, String> {
        let bin = workspace().join(".venv/bin/moto_server");
        if !bin.exists() {
            return Ok(None);
        }
        let port = dynamodb_local::free_port()?;
        let child = std::process::Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let moto = Moto { endpoint: format!("http://127.0.0.1:{port}"), child };
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if http.get(format!("{}/moto-api/", moto.endpoint)).send().await.is_ok() {
                return Ok(Some(moto));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("moto_server did not start on {}", moto.endpoint))
    }

    /// A bus of `name` on it, and the outbox's bus for it.
    pub async fn bus(&self, name: &str) -> Result<Bus, String> {
        let sdk = credits_shared::store::sdk_config(Some(&self.endpoint)).await;
        aws_sdk_eventbridge::Client::new(&sdk)
            .create_event_bus()
            .name(name)
            .send()
            .await
            .map_err(|e| format!("creating the bus on moto: {e:?}"))?;
        Ok(Bus::event_bridge(name.to_owned(), Some(&self.endpoint)).await)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
