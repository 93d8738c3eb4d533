from collections.abc import Mapping
from typing import Any

from werkzeug import Request, Response

from dify_plugin.entities.provider_config import CredentialType
from dify_plugin.entities.trigger import EventDispatch, Subscription, UnsubscribeResult
from dify_plugin.errors.trigger import TriggerDispatchError, TriggerProviderCredentialValidationError
from dify_plugin.interfaces.trigger import Trigger, TriggerSubscriptionConstructor


class EchoTrigger(Trigger):
    """A webhook fires the events its JSON body lists and is answered with the subscription's endpoint."""

    def _dispatch_event(self, subscription: Subscription, request: Request) -> EventDispatch:
        try:
            payload = request.get_json(force=True, silent=False) or {}
        except Exception as e:
            raise TriggerDispatchError(f"invalid webhook payload: {e}") from e
        response = Response(f"seen by {subscription.endpoint}", status=202, mimetype="text/plain")
        return EventDispatch(events=list(payload.get("events", [])), response=response)


class EchoSubscriptionConstructor(TriggerSubscriptionConstructor):
    def _validate_api_key(self, credentials: dict[str, Any]) -> None:
        if credentials.get("api_key") == "bad":
            raise TriggerProviderCredentialValidationError("api key rejected")

    def _create_subscription(
        self,
        endpoint: str,
        parameters: Mapping[str, Any],
        credentials: Mapping[str, Any],
        credential_type: CredentialType,
    ) -> Subscription:
        return Subscription(
            expires_at=4102444800,
            endpoint=endpoint,
            properties={"events": list(parameters.get("events", [])), "key": credentials.get("api_key")},
        )

    def _delete_subscription(
        self,
        subscription: Subscription,
        credentials: Mapping[str, Any],
        credential_type: CredentialType,
    ) -> UnsubscribeResult:
        return UnsubscribeResult(success=True, message=f"removed {subscription.endpoint}")

    def _refresh_subscription(
        self,
        subscription: Subscription,
        credentials: Mapping[str, Any],
        credential_type: CredentialType,
    ) -> Subscription:
        return Subscription(
            expires_at=subscription.expires_at + 100,
            endpoint=subscription.endpoint,
            properties=subscription.properties,
        )
