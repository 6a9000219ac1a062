//! The OpenAPI document's error responses, stated once for every operation.
//!
//! Handlers declare their success responses and any error that is particular to them; the
//! errors every operation of a kind can return (a malformed body, a missing object, a refused
//! credential, a body over the limit, a node that is not clustered…) are added here by rule, so
//! the document lists every status code an operation can answer and a client generated from it
//! (or schemathesis checking the server against it) sees no undocumented status.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};
use utoipa::Modify;

/// Endpoints that answer without a credential.
pub const PUBLIC: &[(&str, &str)] = &[
    ("get", "/api/v1/health"),
    ("post", "/api/v1/access/ticket"),
    ("post", "/api/v1/cluster/join"),
    ("post", "/api/v1/cluster/peer/update"),
    ("post", "/api/v1/cluster/peer/leave"),
];

/// Adds the error responses each operation can return (see the module documentation).
pub struct ErrorResponses;

/// The error statuses `method path` can answer, with what each means there.
pub fn error_statuses(
    method: &str,
    path: &str,
    has_params: bool,
    has_body: bool,
) -> Vec<(u16, &'static str)> {
    let mut v = Vec::new();
    let public = PUBLIC.iter().any(|(m, p)| *m == method && *p == path);
    if has_params || has_body || path.contains('{') {
        v.push((
            400,
            "invalid request: a parameter or body field is malformed or refused (`field` names it)",
        ));
    }
    if !public {
        v.push((401, "no valid credential (log in, or use an API token)"));
        v.push((
            403,
            "the credential lacks the privilege this operation needs, or the CSRF header is missing",
        ));
    } else if path == "/api/v1/access/ticket" {
        v.push((401, "wrong user name or password"));
    }
    if path.contains('{') {
        v.push((404, "no such node, VM, pool, volume, network, task or key"));
    }
    if (method != "get" && !public) || path.starts_with("/api/v1/cluster") {
        v.push((
            409,
            "refused in the current state: the object exists or is busy (another task holds it), or the node is not (or already) in a cluster",
        ));
    }
    if has_body {
        v.push((413, "request body over the endpoint's limit"));
    }
    if path == "/api/v1/access/ticket" {
        v.push((
            429,
            "too many failed logins from this address or for this user: retry after the Retry-After delay",
        ));
    }
    if path.starts_with("/api/v1/nodes/") {
        v.push((
            502,
            "the hypervisor (libvirt) or a member node failed the call; `message` carries its words",
        ));
    }
    if path.starts_with("/api/v1/cluster") || path.starts_with("/api/v1/access") {
        v.push((
            503,
            "the cluster's config store or a cluster engine cannot answer right now (clustered nodes only)",
        ));
    }
    v
}

fn add(method: &str, path: &str, op: &mut Operation) {
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let has_body = op.request_body.is_some();
    for (code, what) in error_statuses(method, path, has_params, has_body) {
        op.responses
            .responses
            .entry(code.to_string())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(what)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build(),
                )
            });
    }
}

impl Modify for ErrorResponses {
    fn modify(&self, doc: &mut OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, op) in [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ] {
                if let Some(op) = op.as_mut() {
                    add(method, path, op);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let codes = |m, p, params, body| -> Vec<u16> {
            error_statuses(m, p, params, body)
                .into_iter()
                .map(|(c, _)| c)
                .collect()
        };
        assert_eq!(
            codes("get", "/api/v1/health", false, false),
            Vec::<u16>::new()
        );
        assert_eq!(
            codes("post", "/api/v1/access/ticket", false, true),
            vec![400, 401, 413, 429, 503]
        );
        assert_eq!(
            codes("get", "/api/v1/nodes/{node}/vms/{vmid}", true, false),
            vec![400, 401, 403, 404, 502]
        );
        assert_eq!(
            codes("post", "/api/v1/nodes/{node}/vms", true, true),
            vec![400, 401, 403, 404, 409, 413, 502]
        );
        assert_eq!(
            codes("get", "/api/v1/cluster/status", false, false),
            vec![401, 403, 409, 503]
        );
    }
}
