//! DescribeCluster: the cluster id, the active controller and the brokers (the fenced ones
//! too if asked, from version 2).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::{KafkaContext, host_and_port, metadata};

/// Kafka's endpoint type for the brokers (the other, 2, is the controllers').
const BROKER_ENDPOINTS: i8 = 1;

/// Answers a DescribeCluster request.
pub(super) fn handle(
    request: &DescribeClusterRequest,
    context: &KafkaContext,
) -> DescribeClusterResponse {
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(BROKER_ENDPOINTS)
        .with_cluster_id(StrBytes::from_string(context.cluster_id.clone()))
        .with_controller_id(BrokerId(metadata::controller_id(context)))
        // No ACLs: the client may do everything (Kafka's "not requested" is i32::MIN).
        .with_cluster_authorized_operations(i32::MIN);
    if request.endpoint_type != BROKER_ENDPOINTS {
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "only broker endpoints (type 1) are described; Weir's controllers are reached \
                 through the brokers",
            )));
    }
    let brokers = context
        .controller
        .metadata()
        .brokers()
        .filter(|b| request.include_fenced_brokers || !b.fenced)
        .filter_map(|b| {
            let (host, port) = host_and_port(&b.endpoints.kafka)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(host))
                    .with_port(i32::from(port))
                    .with_rack(b.rack.clone().map(StrBytes::from_string))
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    response.with_brokers(brokers)
}
