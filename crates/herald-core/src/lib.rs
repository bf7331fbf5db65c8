//! Herald's domain vocabulary: typed prefixed ids and values that are valid by
//! construction ("parse, don't validate"). Nothing here knows about HTTP, SQL or
//! brokers, so every other crate can depend on it.

pub mod delivery;
pub mod error_class;
pub mod filter;
pub mod id;
pub mod operational;
pub mod policy;
pub mod retry;
pub mod secret;
pub mod source;
pub mod stats;
pub mod value;

pub use delivery::DeliveryState;
pub use error_class::ErrorClass;
pub use filter::EventTypeFilter;
pub use id::{
    ApiKeyId, ApplicationId, AttemptId, EndpointId, MessageId, SourceId, TaskId, TenantId,
};
pub use secret::EndpointSecret;
pub use value::{
    ChannelName, EndpointHeaders, EndpointUrl, EventTypeName, FeatureFlag, IdOrUid, Metadata, Uid,
    ValidationError,
};
