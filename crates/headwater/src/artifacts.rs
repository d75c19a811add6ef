//! What runs publish for people (artifacts) and the named values they read
//! (variables).

use chrono::Utc;
use headwater_core::{validate_artifact, validate_variable, Artifact, ArtifactKind, Variable};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::context::RunContext;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::recorder::Event;

/// An artifact about to be published: give it a key to keep versions of
/// one thing (a report, a table of row counts), and a description.
#[must_use = "an artifact is only recorded by publish()"]
pub struct NewArtifact {
    artifact: Artifact,
}

impl NewArtifact {
    fn new(kind: ArtifactKind, data: Value) -> NewArtifact {
        NewArtifact {
            artifact: Artifact {
                id: Uuid::now_v7(),
                key: None,
                kind,
                data,
                description: None,
                flow_run_id: None,
                task_run_id: None,
                created: Utc::now(),
            },
        }
    }

    /// Lowercase letters, digits and `-`; each publish under a key is a new
    /// version of it.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.artifact.key = Some(key.into());
        self
    }

    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.artifact.description = Some(text.into());
        self
    }

    /// Records the artifact with the run it was published from (if any).
    pub fn publish(mut self) -> Result<Uuid> {
        validate_artifact(&self.artifact).map_err(Error::InvalidArtifact)?;
        let engine = match RunContext::current() {
            Some(ctx) => {
                self.artifact.flow_run_id = Some(ctx.flow.id);
                self.artifact.task_run_id = ctx.task_run.as_ref().map(|(id, _)| *id);
                ctx.engine.clone()
            }
            None => Engine::current()?,
        };
        let id = self.artifact.id;
        engine.recorder.send(Event::Artifact(self.artifact));
        Ok(id)
    }
}

/// A markdown artifact (a report, a summary).
pub fn markdown_artifact(markdown: impl Into<String>) -> NewArtifact {
    NewArtifact::new(ArtifactKind::Markdown, Value::String(markdown.into()))
}

/// A table artifact from rows (structs or maps with the same fields, or lists).
pub fn table_artifact<T: Serialize>(rows: &[T]) -> Result<NewArtifact> {
    let data = serde_json::to_value(rows).map_err(|e| Error::InvalidArtifact(format!("rows cannot be stored: {e}")))?;
    Ok(NewArtifact::new(ArtifactKind::Table, data))
}

/// A link artifact (where the run put its output).
pub fn link_artifact(url: impl Into<String>, text: Option<&str>) -> NewArtifact {
    NewArtifact::new(ArtifactKind::Link, json!({"url": url.into(), "text": text}))
}

fn engine() -> Result<std::sync::Arc<Engine>> {
    match RunContext::current() {
        Some(ctx) => Ok(ctx.engine.clone()),
        None => Engine::current(),
    }
}

/// Named JSON values kept by Headwater (`headwater variable set`), readable
/// from any flow.
pub mod variables {
    use super::*;

    /// The variable's value, if it is set.
    pub async fn get(name: &str) -> Result<Option<Value>> {
        let engine = engine()?;
        let found = engine.store().read_variable(name).await.map_err(Error::from)?;
        Ok(found.map(|v| v.value))
    }

    /// The variable's value as `T`; an error names the variable if it does
    /// not have that shape.
    pub async fn get_as<T: DeserializeOwned>(name: &str) -> Result<Option<T>> {
        match get(name).await? {
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| Error::Store(format!("variable '{name}' does not have the expected shape: {e}"))),
            None => Ok(None),
        }
    }

    /// Sets the variable (created, or replaced keeping its tags).
    pub async fn set(name: &str, value: impl Serialize) -> Result<()> {
        let engine = engine()?;
        let value = serde_json::to_value(value).map_err(|e| Error::Store(format!("variable '{name}': {e}")))?;
        let now = Utc::now();
        let store = engine.store();
        let existing = store.read_variable(name).await.map_err(Error::from)?;
        let tags = existing.map(|v| v.tags).unwrap_or_default();
        let variable = Variable { name: name.to_string(), value, tags, created: now, updated: now };
        validate_variable(&variable).map_err(Error::Store)?;
        store.set_variable(&variable).await.map_err(Error::from)?;
        Ok(())
    }
}
