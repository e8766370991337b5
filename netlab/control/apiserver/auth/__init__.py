"""Who a request is and what it may do, as upstream's API server decides it: authentication
(authn.py: client certificates, service-account tokens, the lab's static token, anonymous),
impersonation, authorization (the Node authorizer, then RBAC), the review APIs, admission of
pods (PodSecurity, NodeRestriction) and the audit log."""
