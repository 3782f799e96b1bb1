DROP TABLE IF EXISTS fossil_subscription_parked;
DROP TABLE IF EXISTS fossil_subscription_pending;
DROP TABLE IF EXISTS fossil_subscription_leases;
DROP TABLE IF EXISTS fossil_subscriptions;
