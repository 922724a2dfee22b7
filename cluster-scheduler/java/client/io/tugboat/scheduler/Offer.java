package io.tugboat.scheduler;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/** One offer of an OFFERS event: an agent's free resources, valid until used, declined or rescinded. */
public record Offer(String id, String frameworkId, String agentId, String hostname, Resources resources,
                   Map<String, String> attributes, Map<String, Object> json) {

  /** Reads {"id":{..},"agent_id":{..},"hostname":..,"resources":[..],"attributes":[..]}; null without an id. */
  public static Offer fromJson(Object j) {
    String id = Json.idAt(j, "id");
    if (id == null) return null;
    Map<String, String> attrs = new LinkedHashMap<>();
    for (Object a : Json.asArray(Json.at(j, "attributes"))) {
      String name = Json.string(a, "name");
      String text = Json.string(a, "text", "value");
      if (name != null && text != null) attrs.put(name, text);
    }
    return new Offer(id, Json.idAt(j, "framework_id"), Json.idAt(j, "agent_id"), Json.string(j, "hostname"),
        Resources.fromJson(Json.at(j, "resources")), Collections.unmodifiableMap(attrs), Json.asObject(j));
  }

  @Override
  public String toString() {
    return "offer " + id + " on " + hostname + " (" + agentId + "): " + resources;
  }
}
