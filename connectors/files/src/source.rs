//! [`FilesSource`]: JSONL and CSV files as streams, read in pages by byte offset.

use std::sync::Arc;

use async_trait::async_trait;
use dovetail_core::{
    BuildCx, Cx, Error, ErrorKind, Page, Provenance, ReadRequest, Reject, Source, SourceConnector, StreamSpec,
};
use serde_json::Value;

use crate::config::{FilesSourceConfig, PlanFormat, StreamPlan};
use crate::position::Position;

/// Reads JSON Lines and CSV files, one stream per file.
///
/// Each `read` opens the file, checks the position's fingerprint, seeks to its offset and
/// reads up to `batch_size` rows on the blocking pool. See the crate docs for the position
/// format and the `follow` mode.
#[derive(Debug, Clone)]
pub struct FilesSource {
    streams: Vec<Arc<StreamPlan>>,
}

impl FilesSource {
    fn plan(&self, stream: &str) -> Result<&Arc<StreamPlan>, Error> {
        self.streams.iter().find(|p| p.name == stream).ok_or_else(|| {
            let known: Vec<&str> = self.streams.iter().map(|p| p.name.as_str()).collect();
            Error::config(format!("the files source has no stream `{stream}` (streams: {})", known.join(", ")))
        })
    }
}

#[async_trait]
impl Source for FilesSource {
    fn kind(&self) -> &'static str {
        crate::SOURCE_KIND
    }

    fn streams(&self) -> Vec<StreamSpec> {
        self.streams.iter().map(|p| p.spec()).collect()
    }

    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        for plan in &self.streams {
            let fail = |why: String| {
                Error::config(format!(
                    "stream `{}`: cannot read `{}` ({}): {why}",
                    plan.name,
                    plan.display,
                    plan.path.display()
                ))
            };
            let file = tokio::fs::File::open(&plan.path).await.map_err(|e| fail(e.to_string()).with_source(e))?;
            let meta = file.metadata().await.map_err(|e| fail(e.to_string()).with_source(e))?;
            if !meta.is_file() {
                return Err(fail("not a regular file".into()));
            }
        }
        Ok(())
    }

    async fn read(&self, req: &ReadRequest, _cx: &Cx) -> Result<Page, Error> {
        let plan = self.plan(&req.stream)?.clone();
        let from = req.position.as_ref().map(|v| Position::decode(&plan.name, v)).transpose()?;
        let batch = req.batch_size.max(1);
        let provenance = Arc::new(Provenance {
            connector: crate::SOURCE_KIND.to_owned(),
            endpoint: plan.display.clone(),
            api_version: None,
            fetched_at: dovetail_core::now_rfc3339(),
            request_id: None,
            status: None,
            stale: false,
        });
        let task_plan = plan.clone();
        let page = tokio::task::spawn_blocking(move || match task_plan.format {
            PlanFormat::Jsonl => crate::jsonl::read_page(&task_plan, from, batch, provenance),
            PlanFormat::Csv(opts) => crate::csv::read_page(&task_plan, opts, from, batch, provenance),
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("reading `{}` ended abnormally: {e}", plan.display)))?;
        page.map_err(|e| e.in_stream(&plan.name).in_connector(crate::SOURCE_KIND))
    }

    fn decode_raw(&self, stream: &str, raw: &str) -> Result<Value, Reject> {
        let plan = self.plan(stream).map_err(|e| Reject {
            location: None,
            reason: e.message().to_owned(),
            path: None,
            raw: raw.to_owned(),
            drift: None,
        })?;
        match plan.format {
            PlanFormat::Jsonl => crate::jsonl::decode_line(raw),
            PlanFormat::Csv(opts) => crate::csv::decode_row(plan, opts, raw),
        }
    }
}

impl SourceConnector for FilesSource {
    const KIND: &'static str = crate::SOURCE_KIND;
    type Config = FilesSourceConfig;

    fn build(config: FilesSourceConfig, cx: &BuildCx) -> Result<Self, Error> {
        let streams = config.plan(cx)?.into_iter().map(Arc::new).collect();
        Ok(FilesSource { streams })
    }
}
