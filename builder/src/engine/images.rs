//! Images on the engine: inspect, pull, push, load, import, remove, and read one file of an image.

use std::collections::HashMap;

use bollard::query_parameters::{
    CreateImageOptions, ImportImageOptions, PushImageOptions, RemoveImageOptions,
};
use futures_util::{Stream, StreamExt};

use super::{Engine, short};
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};

/// What kiln reads of a local image.
#[derive(Clone, Debug, Default)]
pub struct ImageInfo {
    pub labels: HashMap<String, String>,
    pub architecture: String,
    pub os: String,
    /// The diff ids of its layers, in order.
    pub diff_ids: Vec<String>,
    /// Its container configuration (`Config` of the image JSON), as the engine gives it.
    pub config: serde_json::Value,
    /// Its size in bytes.
    pub size: i64,
    /// Its id (the digest of its configuration).
    pub id: String,
    /// The digests the registries it came from know it by (`name@sha256:…`).
    pub repo_digests: Vec<String>,
}

impl Engine {
    /// What the engine knows of a local image, or `None` when it has no such image.
    pub async fn inspect_image(&self, name: &str) -> Result<Option<ImageInfo>, BuildError> {
        match self.docker.inspect_image(name).await {
            Ok(image) => Ok(Some(ImageInfo {
                labels: image
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.clone())
                    .unwrap_or_default(),
                architecture: image.architecture.clone().unwrap_or_default(),
                os: image.os.clone().unwrap_or_default(),
                diff_ids: image
                    .root_fs
                    .as_ref()
                    .and_then(|r| r.layers.clone())
                    .unwrap_or_default(),
                config: serde_json::to_value(&image.config).unwrap_or_default(),
                size: image.size.unwrap_or_default(),
                id: image.id.clone().unwrap_or_default(),
                repo_digests: image.repo_digests.clone().unwrap_or_default(),
            })),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(BuildError::Engine(e.to_string())),
        }
    }

    /// The labels of a local image, or `None` when the engine has no such image.
    pub async fn image_labels(
        &self,
        name: &str,
    ) -> Result<Option<HashMap<String, String>>, BuildError> {
        Ok(self.inspect_image(name).await?.map(|i| i.labels))
    }

    pub async fn remove_image(&self, name: &str) -> Result<(), BuildError> {
        self.docker
            .remove_image(
                name,
                Some(RemoveImageOptions {
                    force: true,
                    ..Default::default()
                }),
                None,
            )
            .await
            .map(|_| ())
            .map_err(|e| BuildError::Engine(e.to_string()))
    }

    /// Pull an image from its registry.
    pub async fn pull(
        &self,
        image: &str,
        credentials: Option<bollard::auth::DockerCredentials>,
    ) -> Result<(), BuildError> {
        let mut pull = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(image.to_string()),
                ..Default::default()
            }),
            None,
            credentials,
        );
        while let Some(item) = pull.next().await {
            let info = item.map_err(|e| BuildError::Engine(format!("pulling {image}: {e}")))?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(BuildError::Engine(format!("pulling {image}: {message}")));
            }
        }
        Ok(())
    }

    /// Push a local image to its registry, with `pushing` events per layer.
    pub async fn push(
        &self,
        name: &str,
        credentials: Option<bollard::auth::DockerCredentials>,
        sink: &mut dyn EventSink,
    ) -> Result<(), BuildError> {
        let (repo, tag) = match name.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => (name, "latest"),
        };
        let options = PushImageOptions {
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        let mut stream = self.docker.push_image(repo, Some(options), credentials);
        let mut layers = 0;
        while let Some(item) = stream.next().await {
            let info =
                item.map_err(|e| BuildError::Push(format!("{name}: {}", short(&e.to_string()))))?;
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                return Err(BuildError::Push(format!("{name}: {}", short(&error))));
            }
            match info.status.as_deref() {
                Some("Pushed") | Some("Layer already exists") => {
                    layers += 1;
                    sink.emit(Event::new(
                        Phase::Pushing,
                        format!(
                            "{name}: layer {layers} {}",
                            info.status.unwrap_or_default().to_lowercase()
                        ),
                    ));
                }
                Some(s) if s.starts_with("Mounted from") || s.contains("digest:") => {
                    sink.emit(Event::new(Phase::Pushing, format!("{name}: {s}")));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Load a docker archive file (`docker load`), streamed, then check that `tag` is there.
    pub async fn load(&self, archive: &std::path::Path, tag: &str) -> Result<(), BuildError> {
        let file = tokio::fs::File::open(archive)
            .await
            .map_err(|e| BuildError::io(format!("reading {}", archive.display()), e))?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        let mut stream = self.docker.import_image_stream(
            ImportImageOptions {
                quiet: true,
                ..Default::default()
            },
            body,
            None,
        );
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| BuildError::Engine(format!("loading {tag}: {e}")))?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(BuildError::Engine(format!("loading {tag}: {message}")));
            }
        }
        match self.image_labels(tag).await? {
            Some(_) => Ok(()),
            None => Err(BuildError::Engine(format!(
                "loading {tag}: the engine answered without the image"
            ))),
        }
    }

    /// Import a root file system (a tar stream) as the image `repo:tag` (`docker import`).
    pub async fn import_root(
        &self,
        repo: &str,
        tag: &str,
        labels: &[(&str, &str)],
        tar: impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<(), BuildError> {
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_src: Some("-".into()),
                repo: Some(repo.into()),
                tag: Some(tag.into()),
                changes: labels
                    .iter()
                    .map(|(k, v)| format!("LABEL {k}={v}"))
                    .collect(),
                ..Default::default()
            }),
            Some(bollard::body_try_stream(tar)),
            None,
        );
        while let Some(item) = stream.next().await {
            item.map_err(|e| BuildError::Engine(format!("importing {repo}:{tag}: {e}")))?;
        }
        Ok(())
    }

    /// The bytes of a regular file of an image (through a container that is created, never
    /// started), or `None` when there is no such file.
    pub async fn read_file(&self, image: &str, path: &str) -> Result<Option<Vec<u8>>, BuildError> {
        let container = self
            .docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                bollard::models::ContainerCreateBody {
                    image: Some(image.to_string()),
                    entrypoint: Some(vec!["/bin/true".into()]),
                    network_disabled: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| BuildError::Engine(format!("{image}: {e}")))?;
        let mut stream = self.docker.download_from_container(
            &container.id,
            Some(bollard::query_parameters::DownloadFromContainerOptions {
                path: path.to_string(),
            }),
        );
        let mut bytes = Vec::new();
        let mut missing = false;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(_) => {
                    missing = true;
                    break;
                }
            }
        }
        self.remove_container(&container.id).await;
        if missing {
            return Ok(None);
        }
        let io = |e| BuildError::io(format!("{image}: reading {path}"), e);
        let mut archive = tar::Archive::new(bytes.as_slice());
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            if entry.header().entry_type().is_file() {
                let mut content = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut content).map_err(io)?;
                return Ok(Some(content));
            }
        }
        Ok(None)
    }
}
