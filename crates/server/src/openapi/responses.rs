//! The error responses that operations refer to, one per status (`E404`,
//! ...): what the status means, and the body [`ApiError`](crate::error)
//! answers it with.

use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{ToResponse, ToSchema};

use crate::error::{ErrorMessage, Errors, GolemErrorBody};

/// Declares a reusable response per status: a type to name in
/// `#[utoipa::path(responses((status = 404, response = E404)))]`, whose
/// JSON body has the schema of the given type.
macro_rules! error_responses {
    ($($name:ident($body:ty): $description:literal;)*) => {
        $(
            #[doc = $description]
            pub(crate) struct $name;

            impl<'s> ToResponse<'s> for $name {
                fn response() -> (&'s str, RefOr<Response>) {
                    let body = Ref::from_schema_name(<$body as ToSchema>::name());
                    let response = ResponseBuilder::new()
                        .description($description)
                        .content(
                            "application/json",
                            ContentBuilder::new().schema(Some(body)).build(),
                        )
                        .build();
                    (stringify!($name), response.into())
                }
            }
        )*
    };
}

error_responses! {
    E400(Errors): "Bad input, one message per problem";
    E401(ErrorMessage): "Missing or wrong API token; or a completion link token this server did not issue, or that was altered";
    E403(ErrorMessage): "A completion link that expired, or does not allow this action";
    E404(ErrorMessage): "Unknown component, worker, function or promise";
    E409(ErrorMessage): "Worker name taken, worker failed or deleted, or the promise already settled";
    E413(ErrorMessage): "Body larger than the limit, or a promise's payload larger than --max-payload";
    E422(ErrorMessage): "Component imports what Vow does not provide";
    E500(GolemErrorBody): "Golem's error body: the invocation trapped (`RuntimeError`), the worker failed earlier (`PreviousInvocationFailed`), or a host fault (`Unknown`)";
    E503(ErrorMessage): "Runtime shutting down or out of instance slots";
    E504(ErrorMessage): "Invocation timed out";
}
