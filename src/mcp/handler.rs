//! The MCP side of the [`Server`]: its identity, its tool list, and each
//! `tools/call` turned into a ledger read or a delegation, answered as structured
//! content or as a tool error.

use std::sync::Arc;

use rmcp::ErrorData;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
    DetailedTask, GetTaskParams, GetTaskResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
    UpdateTaskParams,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Value, json};

use super::arguments::{self, BadArgument, Check, Delegate, Pending};
use super::{Server, schema, tasks};
use crate::dispatch;

/// What the server tells a client about itself when the session starts.
const INSTRUCTIONS: &str = "Delegate a task to another agent over A2A with \
`delegate_task_async`: it answers at once with the delegation id, queued and durable. \
Poll `check_task_status` with that id until `status` is `delivered` or `failed`; a \
failed one names its `reason` and whether the target may have the task \
(`target_received`), which decides whether a retry could duplicate it. \
`list_pending` shows what has not settled.";

/// Why a tool call produced no answer: the arguments, or the tool itself failed.
enum Refusal {
    Argument(BadArgument),
    Failed {
        error: &'static str,
        message: String,
    },
}

impl From<BadArgument> for Refusal {
    fn from(bad: BadArgument) -> Self {
        Refusal::Argument(bad)
    }
}

impl Refusal {
    fn failed(error: &'static str, message: impl Into<String>) -> Self {
        Refusal::Failed {
            error,
            message: message.into(),
        }
    }

    /// The tool error a client sees: `isError: true`, the reason as text, and
    /// `{"error", "message"}` (with `argument` for a bad one) as structured content.
    fn into_result(self) -> CallToolResult {
        let (text, value) = match self {
            Refusal::Argument(bad) => (bad.to_string(), bad.to_json()),
            Refusal::Failed { error, message } => {
                let value = json!({"error": error, "message": message});
                (message, value)
            }
        };
        let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
        result.structured_content = Some(value);
        result
    }
}

/// The tools, each with its input and output schema. For a client that declared
/// the tasks extension (`tasks`), `delegate_task_async` answers with a task whose
/// result is the delegation's status, and its output schema says so.
pub(crate) fn tools(tasks: bool) -> Vec<Tool> {
    let (delegate, delegate_output) = if tasks {
        (
            "Hand a task to another agent over A2A (JSON-RPC over HTTP). Answers at once \
             with an MCP task whose id is the delegation id: the delegation is recorded \
             durably before delivery starts, and delivery goes on in the background. Poll \
             tasks/get (or check_task_status) with the id: the task is working while the \
             delegation is queued, then completed with the delegation's status as its result \
             (isError: true when it failed).",
            schema::status(),
        )
    } else {
        (
            "Hand a task to another agent over A2A (JSON-RPC over HTTP). Answers at once \
             with the receipt {id, status: \"queued\", queued_at}: the delegation is recorded \
             durably before delivery starts, and delivery goes on in the background. Poll \
             check_task_status with the id for the outcome.",
            schema::receipt(),
        )
    };
    let tool = |name: &'static str, description: &'static str, input, output| {
        Tool::new(name, description, Arc::new(input))
            .with_raw_output_schema(Arc::new(schema::object(output)))
    };
    vec![
        tool(
            "delegate_task_async",
            delegate,
            arguments::schema::<Delegate>(),
            delegate_output,
        )
        .annotate(
            ToolAnnotations::new()
                .read_only(false)
                .destructive(false)
                .idempotent(false)
                .open_world(true),
        ),
        tool(
            "check_task_status",
            "The status of one delegation: queued, delivered, failed (with reason, detail, \
             and whether the target may have the task), or not_found. The same object as \
             `delegation-log status --json`.",
            arguments::schema::<Check>(),
            schema::status(),
        )
        .annotate(ToolAnnotations::new().read_only(true).open_world(false)),
        tool(
            "list_pending",
            "Every delegation still queued (not yet delivered or failed), oldest first, \
             optionally only those queued at least older_than seconds ago.",
            arguments::schema::<Pending>(),
            schema::pending(),
        )
        .annotate(ToolAnnotations::new().read_only(true).open_world(false)),
    ]
}

impl Server {
    /// `delegate_task_async`: queue durably, start delivery, answer the receipt.
    async fn delegate_task_async(&self, args: Delegate) -> Result<Value, Refusal> {
        let receipt = self.delegate(args).await?;
        serde_json::to_value(&receipt).map_err(|e| Refusal::failed("internal", e.to_string()))
    }

    /// Queues durably and starts delivery: the receipt, or why nothing was queued.
    async fn delegate(&self, args: Delegate) -> Result<dispatch::Receipt, Refusal> {
        let request = args.request(&self.source)?;
        if let Some(id) = args.id()? {
            let ledger = self.ledger.clone();
            let held = id.clone();
            let existing = blocking(move || Ok(ledger.delegation(&held)?)).await?;
            if existing.is_some() {
                return Err(Refusal::failed(
                    "id_taken",
                    format!(
                        "the log already holds a delegation `{id}`; nothing was sent: ask check_task_status for it"
                    ),
                ));
            }
        }
        let protocol = args.protocol.unwrap_or(self.protocol);
        let receipt = match self.dispatcher(protocol).delegate(request).await {
            Ok(receipt) => receipt,
            Err(dispatch::Error::Closed) => {
                return Err(Refusal::failed(
                    "shutting_down",
                    "the server is shutting down and takes no more delegations",
                ));
            }
            Err(e) => {
                return Err(Refusal::failed(
                    "not_queued",
                    format!("the delegation was not queued, nothing was sent: {e}"),
                ));
            }
        };
        // The delivery goes on without the receipt: the dispatcher tracks it and
        // records its outcome, which check_task_status reads.
        Ok(receipt)
    }

    /// `check_task_status`: the status JSON of `status --json`.
    async fn check_task_status(&self, args: Check) -> Result<Value, Refusal> {
        let id = arguments::delegation_id(&args.id)?;
        let ledger = self.ledger.clone();
        let status = blocking(move || Ok(ledger.task_status(&id)?)).await?;
        serde_json::to_value(&status).map_err(|e| Refusal::failed("internal", e.to_string()))
    }

    /// `list_pending`: every delegation still queued, oldest first, read from
    /// the store's index of open delegations (each checked against its head),
    /// not from a scan of the log.
    async fn list_pending(&self, args: Pending) -> Result<Value, Refusal> {
        let older_than = args.older_than()?;
        let ledger = self.ledger.clone();
        let statuses = blocking(move || {
            let mut statuses = Vec::new();
            for pending in ledger.pending(older_than)? {
                let status = ledger.status(&pending.id)?;
                // Settled since the index was read: no longer pending.
                if status.status == crate::StatusKind::Queued {
                    statuses.push(status);
                }
            }
            Ok::<_, crate::Error>(statuses)
        })
        .await?;
        let mut entries = Vec::with_capacity(statuses.len());
        for status in &statuses {
            let mut entry = serde_json::to_value(status)
                .map_err(|e| Refusal::failed("internal", e.to_string()))?;
            if let Value::Object(fields) = &mut entry {
                fields.insert(
                    "in_flight".to_owned(),
                    Value::Bool(self.ledger.is_claimed(&status.id)),
                );
            }
            entries.push(entry);
        }
        Ok(json!({ "pending": entries }))
    }

    /// `delegate_task_async` for a client that declared the tasks extension: the
    /// task the delegation opens, or the tool error of today's answer.
    async fn delegate_as_task(
        &self,
        arguments: Option<rmcp::model::JsonObject>,
    ) -> CallToolResponse {
        let delegated = match arguments::decode(arguments) {
            Ok(args) => self.delegate(args).await,
            Err(bad) => Err(bad.into()),
        };
        match delegated {
            Ok(receipt) => CallToolResponse::Task(tasks::created(&receipt)),
            Err(refusal) => refusal.into_result().into(),
        }
    }

    /// The task `task_id`, read from the log; -32602 if it is none.
    async fn task(&self, task_id: &str) -> Result<DetailedTask, ErrorData> {
        let id = arguments::delegation_id(task_id)
            .map_err(|bad| tasks::unknown(task_id, Some(bad.to_string())))?;
        let ledger = self.ledger.clone();
        let read = blocking(move || {
            let status = ledger.task_status(&id)?;
            // A task retried was opened when its first attempt was queued.
            let created = match &status.attempts {
                Some(attempts) => ledger.status(&attempts.first)?.queued_at,
                None => status.queued_at,
            };
            Ok((status, created))
        })
        .await;
        let (status, created) = match read {
            Ok(read) => read,
            Err(Refusal::Failed { message, .. }) => {
                return Err(ErrorData::internal_error(message, None));
            }
            Err(Refusal::Argument(bad)) => {
                return Err(tasks::unknown(task_id, Some(bad.to_string())));
            }
        };
        tasks::detailed(&status, created)?.ok_or_else(|| tasks::unknown(task_id, None))
    }

    /// Runs the tool `name`; `None` if there is no such tool.
    async fn call(
        &self,
        name: &str,
        arguments: Option<rmcp::model::JsonObject>,
    ) -> Option<CallToolResult> {
        let answer = match name {
            "delegate_task_async" => match arguments::decode(arguments) {
                Ok(args) => self.delegate_task_async(args).await,
                Err(bad) => Err(bad.into()),
            },
            "check_task_status" => match arguments::decode(arguments) {
                Ok(args) => self.check_task_status(args).await,
                Err(bad) => Err(bad.into()),
            },
            "list_pending" => match arguments::decode(arguments) {
                Ok(args) => self.list_pending(args).await,
                Err(bad) => Err(bad.into()),
            },
            _ => return None,
        };
        Some(match answer {
            Ok(value) => CallToolResult::structured(value),
            Err(refusal) => refusal.into_result(),
        })
    }
}

/// Runs a blocking ledger read off the async threads; its error (or a panic in
/// it) is the tool's failure.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, Refusal> {
    match tokio::task::spawn_blocking(move || crate::store::thread::marked(work)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Refusal::failed(
            "ledger",
            format!("cannot read the log: {e}"),
        )),
        Err(e) => Err(Refusal::failed(
            "ledger",
            format!("reading the log ended abnormally: {e}"),
        )),
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new(
            "delegation-log",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools(tasks::declared(
            &context,
        ))))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name == "delegate_task_async" && tasks::declared(&context) {
            return Ok(self.delegate_as_task(request.arguments).await);
        }
        match self.call(&request.name, request.arguments).await {
            Some(result) => Ok(result.into()),
            None => Err(ErrorData::invalid_params(
                format!(
                    "no tool `{}`; the tools are {}",
                    request.name,
                    super::TOOLS.join(", ")
                ),
                None,
            )),
        }
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools(false).into_iter().find(|tool| tool.name == name)
    }

    // rmcp answers the `tasks/*` methods below only to a client that declared the
    // extension (-32021 otherwise), since the server declares it.

    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        Ok(GetTaskResult::new(self.task(&request.task_id).await?))
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // A delegation never asks the client for input, so every key is unknown,
        // and the extension says unknown keys are ignored.
        self.task(&request.task_id).await.map(|_| ())
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let task = self.task(&request.task_id).await?;
        Err(tasks::not_cancellable(&task.task.task_id, task.status()))
    }
}
