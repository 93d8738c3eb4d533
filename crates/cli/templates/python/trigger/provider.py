import time
from collections.abc import Mapping
from typing import Any

from werkzeug import Request, Response

from dify_plugin.entities.provider_config import CredentialType
from dify_plugin.entities.trigger import EventDispatch, Subscription, UnsubscribeResult
from dify_plugin.errors.trigger import TriggerDispatchError
from dify_plugin.interfaces.trigger import Trigger, TriggerSubscriptionConstructor

EVENT_NAME = "{{plugin_name}}_event"
ONE_WEEK = 7 * 24 * 60 * 60


class {{class_prefix}}Trigger(Trigger):
    def _dispatch_event(self, subscription: Subscription, request: Request) -> EventDispatch:
        # Called for every webhook delivery: decide which events it fires and what to answer.
        try:
            payload = request.get_json(force=True, silent=False) or {}
        except Exception as e:
            raise TriggerDispatchError(f"invalid webhook payload: {e}") from e
        events = [EVENT_NAME] if payload else []
        response = Response('{"status": "ok"}', status=200, mimetype="application/json")
        return EventDispatch(events=events, response=response)


class {{class_prefix}}SubscriptionConstructor(TriggerSubscriptionConstructor):
    def _validate_api_key(self, credentials: dict[str, Any]) -> None:
        return None

    def _create_subscription(
        self,
        endpoint: str,
        parameters: Mapping[str, Any],
        credentials: Mapping[str, Any],
        credential_type: CredentialType,
    ) -> Subscription:
        # Register `endpoint` as the webhook URL with the third-party service here.
        return Subscription(
            expires_at=int(time.time()) + ONE_WEEK,
            endpoint=endpoint,
            properties={"events": list(parameters.get("events", [EVENT_NAME]))},
        )

    def _delete_subscription(
        self,
        subscription: Subscription,
        credentials: Mapping[str, Any],
        credential_type: CredentialType,
    ) -> UnsubscribeResult:
        return UnsubscribeResult(success=True, message="subscription removed")

    def _refresh_subscription(
        self,
        subscription: Subscription,
        credentials: Mapping[str, Any],
        credential_type: CredentialType,
    ) -> Subscription:
        return Subscription(
            expires_at=int(time.time()) + ONE_WEEK,
            endpoint=subscription.endpoint,
            properties=subscription.properties,
        )
