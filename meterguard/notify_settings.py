"""Settings of the alert notifiers, apart from the senders: a config loads no HTTP client."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class WebhookSettings(BaseModel):
    """POST every alert event as JSON to a URL."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, description="http(s) URL that receives the events.")
    secret: str | None = Field(
        default=None,
        description="Signs each body: header X-Meterguard-Signature: sha256=<HMAC hex>.",
    )
    timeout_s: float = Field(default=5.0, gt=0, description="Seconds per delivery attempt.")


class MqttNotifySettings(BaseModel):
    """Publish every alert event on an MQTT topic."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="Broker address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    username: str | None = Field(default=None, description="Broker user name.")
    password: str | None = Field(default=None, description="Broker password.")
    topic_prefix: str = Field(
        default="meterguard",
        description="Events go to <prefix>/alerts/<kind>/<meter> at QoS 1.",
    )


class NotifySettings(BaseModel):
    """Where alert events go besides the store and the live stream."""

    model_config = ConfigDict(extra="forbid")

    webhook: WebhookSettings | None = Field(default=None, description="Off unless set.")
    mqtt: MqttNotifySettings | None = Field(default=None, description="Off unless set.")
    queue_events: int = Field(
        default=10_000, ge=1, description="Events a slow receiver may fall behind by."
    )
    max_attempts: int = Field(
        default=8, ge=1, description="Delivery attempts per event before it is dropped."
    )
