"""What Django, DRF, Celery and their plug-ins use by name where vulture cannot see it: its whitelist.

tests/test_architecture.py gives this module to vulture as code that uses these names, and imports it, so a
name that no longer exists fails the check instead of hiding dead code. Model fields, choices, serializer
fields and template lookups need no line here: the test reads them from Django, DRF and the templates.
"""
from types import SimpleNamespace

from annotations.exports import apis as export_apis
from annotations import project_forms
from annotations.imports import forms
from labelhub import api, authentication, middleware, throttling
from learner.ml import evaluation

# Named by dotted path in labelhub/settings.py or labelhub/urls.py.
middleware.DatabaseBusyMiddleware  # MIDDLEWARE
middleware.RejectNulMiddleware  # MIDDLEWARE
api.api_not_found  # handler404
api.error_responses_hook  # SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"], called with generator=, request=, public=
authentication.login_locked_out  # AXES_LOCKOUT_CALLABLE, called with original_response=
throttling.client_address  # AXES_CLIENT_IP_CALLABLE

# Called or read by the framework they extend.
authentication.TokenAuthentication.authenticate_credentials  # knox's TokenAuthentication.authenticate
authentication.TokenScheme  # drf-spectacular finds OpenApiAuthenticationExtension subclasses itself
authentication.TokenScheme.get_security_definition  # ... and calls this with auto_schema=
export_apis._IgnoreFormatParameter.select_renderer  # DRF passes format_suffix
forms.MultipleFileInput.allow_multiple_selected  # Django's FileInput
forms.MultipleFileField.widget  # Django's Field
project_forms.ProjectSettingsForm.clean_shown_metadata_fields  # Django's Form.clean_<field>
evaluation.McNemar(0, 0, 0, 0, 1.0, 0.0).both_right  # read through dataclasses.asdict into the gate's figures

# Hook parameters that the callers above pass by keyword, so they keep their names though unused; attributes
# set for a library to read: psycopg's server-side cursor batch size, Django's model instance state.
_ = SimpleNamespace(generator=0, public=0, original_response=0, auto_schema=0, format_suffix=0, itersize=0, adding=0)
_.generator, _.public, _.original_response, _.auto_schema, _.format_suffix  # noqa: B018
_.itersize, _.adding  # noqa: B018
