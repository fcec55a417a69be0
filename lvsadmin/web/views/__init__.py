"""The panel's views: each binds a form and calls the service layer; roles are checked by `roles.policy`."""
