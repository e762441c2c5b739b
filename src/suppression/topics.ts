/**
 * A campaign's topic, and the name in a suppression scope `topic:<name>`: one rule for both, so
 * that an opt-out from a topic always names a topic a campaign can have (a scope `topic:News`
 * was accepted once and could never match the campaigns of topic `news`).
 */
export const TOPIC_NAME = /^[a-z0-9][a-z0-9_-]{0,49}$/;
export const TOPIC_RULE = 'lowercase letters, digits, - and _, at most 50';
